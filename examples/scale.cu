// The README's simulator example: scale an array in place.
//
// scale<T>: one thread per element, i = blockIdx.x * blockDim.x + threadIdx.x;
// threads past n do nothing, so any grid with grid * block >= n covers it.
template <typename T>
__global__ void scale(T* data, T factor, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) data[i] = data[i] * factor;
}

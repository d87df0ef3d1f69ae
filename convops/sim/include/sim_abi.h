// sim_abi.h -- what the instrumented kernel translation unit and the
// simulator runtime (sim_runtime.cpp, not instrumented) share.
//
// The kernel TU is compiled with GCC's -fsanitize=thread instrumentation, so
// every load and store it makes calls a __tsan_* hook; the runtime defines
// those hooks (it does not link ThreadSanitizer): they check every access
// against the launch's buffers, shared memory and the thread's own stack,
// and record it for the race detector.  Everything a kernel asks of the
// execution model (its indices, barriers, warp operations) is a call into
// the runtime, which GCC never inlines into instrumented code.
#pragma once
#include <cstddef>
#include <cstdint>

struct uint3 {
  unsigned int x, y, z;
};
struct dim3 {
  unsigned int x, y, z;
  dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace sim {

// Warp operations (sim::warp_op's kind).
// W_MMA and W_LDMATRIX are exchanges (sim::warp_exchange): every lane of the
// group receives every lane's bytes; the tensor-core emulation in
// kernels/include/mma.cuh computes its own results from them.
enum WarpKind { W_SHFL, W_SHFL_UP, W_SHFL_DOWN, W_SHFL_XOR, W_BALLOT, W_ANY, W_ALL, W_SYNC, W_ACTIVEMASK,
                W_MMA, W_LDMATRIX };

// One kernel parameter, for the argument check on the Python side.
struct ParamInfo {
  long size;           // sizeof the parameter
  int is_pointer;      // 1 for a pointer (an array argument)
  long pointee_size;   // sizeof *p (1 for void)
  char kind;           // of the pointee's scalars: f float, i signed, u unsigned, b bool, v bytes/void, s struct
  int elem_size;       // size of one scalar of the pointee (float4: 4)
  const char* type;    // the parameter's type as the compiler spells it
};

struct KernelEntry {
  const char* name;
  const void* function;  // the kernel itself (its symbol names it)
  void (*invoke)(void** args);
  int (*signature)(ParamInfo* out, int capacity);
};

uint3 thread_idx();
uint3 block_idx();
dim3 block_dim();
dim3 grid_dim();
int lane_id();
int barrier(long site, int kind, int value);
unsigned long long warp_op(long site, int kind, unsigned mask, unsigned long long value, int lane_arg, int width);
// A warp-collective exchange: every lane in `mask` waits here (same site, same
// mask, same `bytes`); then `all` (32 * bytes) holds lane i's `mine` at i * bytes
// (0xFF bytes for a lane that does not take part).
void warp_exchange(long site, int kind, unsigned mask, const void* mine, int bytes, void* all);
// cp.async: `bytes` (4, 8 or 16) to shared memory at dst, the first src_bytes from
// src and zeros after.  The source is read at issue; the destination is written
// when a cp_async_wait of the issuing thread covers its group (or the thread
// exits); until then any access to it is reported.
void cp_async(void* dst, const void* src, int bytes, int src_bytes);
// Whether [p, p + bytes) lies in one __shared__ variable or the dynamic shared memory.
bool is_shared(const void* p, int bytes);
void cp_async_commit();
void cp_async_wait(int pending);  // all but the `pending` most recent committed groups
void* dynamic_shared();
[[noreturn]] void trap(const char* what, const char* file, int line);

}  // namespace sim

extern "C" const sim::KernelEntry convops_sim_kernels[];
extern "C" const int convops_sim_kernel_count;

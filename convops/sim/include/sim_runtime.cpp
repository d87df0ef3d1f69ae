// sim_runtime.cpp -- the simulator's runtime: a launch worker process that
// runs CUDA kernels (compiled against cuda_sim.h with GCC's thread-sanitizer
// instrumentation) and checks what a GPU would not tell you.
//
// Process: the Python side (convops/sim/module.py, worker.py) starts this
// executable with a Unix stream socket (fd in CONVOPS_SIM_FD); every message
// either way is an 8-byte length and its bytes.  It sends one launch request
// at a time; the kernel's buffers live in a shared memory arena whose fd comes
// with a request (SCM_RIGHTS) when it changes.  Every error in a kernel -- an
// out-of-bounds or wild access, a race, barrier divergence, division by zero,
// a failed assert, a stack overflow, a crash -- is reported on the socket,
// after which the worker exits; the caller's process never sees the fault.
//
// Execution: a block runs on one OS thread, its threads as cooperative
// fibers (hand-written x86-64 context switch).  __syncthreads and warp
// operations suspend a fiber until the threads they wait for arrive; thread
// order inside each barrier interval is forward or reversed (the request's
// `order`), so an order dependence shows up as a difference between runs.
//
// Checks on every access (the __tsan_* hooks below; not ThreadSanitizer):
// - bounds: an access must lie inside one argument buffer, one of the
//   kernel's static shared variables (this executable's TLS block), the
//   launch's dynamic shared memory, one of the kernel's __device__ variables,
//   the thread's own stack, or this executable's read-only data; anything
//   else is reported, with the buffer or variable it is nearest to.
// - races (when the request asks): each cell of memory (4 bytes of shared
//   and __device__ memory, an element of up to 16 bytes of an argument)
//   keeps its last write and two reads (block, thread, barrier epoch, warp
//   clock, bytes touched, source address).  Two accesses by different
//   threads conflict when they touch a common byte, at least one writes and
//   not both are atomic; they are ordered only by program order, a
//   __syncthreads between them (same block, earlier epoch) or a warp
//   operation both lanes took part in (vector clocks over the warp's lanes).
//   Blocks are never ordered with each other (fences and atomics used for
//   inter-block synchronization are not modelled).  A read already ordered
//   before a newer one is dropped first (any write racing with it races with
//   the newer one too); otherwise the read most like the newer one (same
//   block, same warp) goes, keeping reads from other warps and blocks.  Race
//   runs use one OS thread, so the shadow needs no locks.
//
// Stacks: each fiber's stack sits in a region of size 2^k aligned to 2^k,
// [header page | guard (no access) | stack]; the header holds the fiber's
// Thread*, so the current thread is found from the stack pointer alone.
// Kernel code is compiled with -fstack-clash-protection, so a frame larger
// than the stack touches the guard: SIGSEGV, reported as a stack overflow.
//
// Progress (for the watchdog on the Python side): per OS thread, the number
// of simulated threads finished and the block and thread running, in the
// arena's control page.
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <execinfo.h>
#include <fcntl.h>
#include <link.h>
#include <mutex>
#include <string>
#include <sys/mman.h>
#include <sys/socket.h>
#include <thread>
#include <ucontext.h>
#include <unistd.h>
#include <vector>

#include "sim_abi.h"

// The kernel translation unit's writable data (its __device__ variables):
// the build renames its .data and .bss sections so the linker brackets them.
extern "C" char __start_convops_kdata[] __attribute__((weak));
extern "C" char __stop_convops_kdata[] __attribute__((weak));
extern "C" char __start_convops_kbss[] __attribute__((weak));
extern "C" char __stop_convops_kbss[] __attribute__((weak));

namespace sim {

// ---- fibers ------------------------------------------------------------------
extern "C" void convops_sim_switch(void** save_sp, void* load_sp);
asm(R"(
.text
.globl convops_sim_switch
.type convops_sim_switch,@function
convops_sim_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
.size convops_sim_switch, .-convops_sim_switch
)");

enum State { READY, AT_BARRIER, AT_WARP, DONE };
constexpr int kMaxThreads = 1024;
constexpr int kMaxSlots = 16;  // OS threads running blocks at once (two VMAs per fiber stack each)
constexpr size_t kPage = 4096;

struct Block;
struct Launch;
struct Slot;

struct Access {  // one recorded access, for the race detector
  uint32_t block, epoch, clock, pc;
  uint16_t thread;
  uint16_t bytes;  // which bytes of the cell it touched
  uint8_t flags;   // 1 valid, 2 write, 4 atomic
};
struct Cell {
  Access w, r0, r1;
};

struct Thread {
  void* sp = nullptr;
  State state = READY;
  long site = 0;
  int kind = 0;          // barrier kind (0 plain, 1 count, 2 and, 3 or) or WarpKind
  int bar_value = 0;
  unsigned mask = 0;
  uint64_t value = 0;
  int lane_arg = 0, width = 32;
  uint64_t result = 0;
  uint3 tid;
  unsigned linear = 0;
  Block* block = nullptr;
  uintptr_t stack_lo = 0, stack_hi = 0, guard_lo = 0;
  uint32_t vc[32];  // warp vector clock (own lane: own clock)
  const void* xsrc = nullptr;  // warp_exchange: this lane's bytes, where all lanes' go, how many
  void* xdst = nullptr;
  int xbytes = 0;
  struct Copy {  // a cp.async issued and not yet complete
    uintptr_t dst, pc;
    int bytes;
    unsigned group;
    unsigned char data[16];
  };
  std::vector<Copy> copies;
  unsigned groups = 0;  // cp.async groups committed
};

struct Span {  // a range the kernel may touch, with its race shadow
  uintptr_t lo = 0, hi = 0;
  unsigned granule = 1;  // bytes per shadow cell
  Cell* shadow = nullptr;
  int arg = -1;          // argument buffers: the first argument pointing into it
  void* map = nullptr;   // argument buffers: the reservation [gap | data | gap]
  size_t map_len = 0;
};

struct Launch {
  const KernelEntry* kernel = nullptr;
  dim3 grid, block;
  size_t dyn_bytes = 0;
  int order = 0;
  bool race = false;
  unsigned nthreads = 0;
  void** args = nullptr;
  std::vector<Span> regions;                          // argument buffers
  std::vector<std::pair<uint64_t, uint64_t>> shared;  // (offset in the TLS block, size): its __shared__ variables
  std::vector<std::pair<uint64_t, uint64_t>> device;  // (address, size): the module's __device__ variables
  Cell* device_shadow = nullptr;
  std::atomic<unsigned long> next{0};
};

struct Slot {  // what one OS thread running blocks owns
  int index = 0;
  char* fibers = nullptr;  // kMaxThreads regions
  char* dyn = nullptr;     // dynamic shared memory: its own mapping, unmapped pages after it
  size_t dyn_capacity = 0;
  uintptr_t tls_lo = 0, tls_hi = 0;
  Cell* tls_shadow = nullptr;
  Cell* dyn_shadow = nullptr;
  bool started = false;
  // cp.async destinations not yet written, per byte of static and dynamic shared memory
  std::vector<uint8_t> pend_tls, pend_dyn;
  long pending = 0;
};

struct Block {
  Launch* launch = nullptr;
  Slot* slot = nullptr;
  uint3 bid;
  uint32_t linear = 0;
  uint32_t epoch = 0;
  bool warp_synced = true;  // a warp operation completed: the vector clocks need resetting
  Thread* threads = nullptr;
  void* scheduler_sp = nullptr;
};

// ---- process state -----------------------------------------------------------------
static int g_sock = -1;
static size_t g_region_size = 0;   // fiber region (power of two)
static uintptr_t g_region_mask = 0;
static size_t g_stack_bytes = 64 << 10;
static uintptr_t g_fib_lo = 0, g_fib_size = 0;
static Slot g_slots[kMaxSlots];
static Launch* g_launch = nullptr;
static std::mutex g_report_lock;
static std::vector<std::pair<uintptr_t, uintptr_t>> g_static;  // this executable's loaded segments
static uintptr_t g_text_lo = 0, g_text_hi = 0;                  // its code
static volatile uint64_t* g_control = nullptr;                  // progress, read by the watchdog
static size_t g_arena_len = 0;
static char* g_arena = nullptr;
static int g_arena_fd = -1;
static std::vector<char> g_device_snapshot;  // __device__ data before the launch's first run

static inline uintptr_t kdata_lo() { return reinterpret_cast<uintptr_t>(__start_convops_kdata); }
static inline uintptr_t kdata_hi() { return reinterpret_cast<uintptr_t>(__stop_convops_kdata); }
static inline uintptr_t kbss_lo() { return reinterpret_cast<uintptr_t>(__start_convops_kbss); }
static inline uintptr_t kbss_hi() { return reinterpret_cast<uintptr_t>(__stop_convops_kbss); }

static inline Thread* fiber_at(uintptr_t sp) {
  if (sp - g_fib_lo >= g_fib_size) return nullptr;
  return *reinterpret_cast<Thread**>(sp & g_region_mask);
}

static inline Thread* current() { return fiber_at(reinterpret_cast<uintptr_t>(__builtin_frame_address(0))); }

// ---- messages: an 8-byte length, then the bytes -----------------------------------------------
static void write_all(const char* p, size_t n) {
  while (n) {
    ssize_t k = send(g_sock, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) _exit(5);  // the caller is gone
    p += k;
    n -= (size_t)k;
  }
}

static void send_message(const std::string& s) {
  uint64_t n = s.size();
  write_all(reinterpret_cast<const char*>(&n), sizeof n);
  write_all(s.data(), s.size());
}

static void json_str(std::string& out, const char* s) {
  out += '"';
  for (; s && *s; ++s) {
    unsigned char c = *s;
    if (c == '"' || c == '\\') { out += '\\'; out += c; }
    else if (c < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); out += b; }
    else out += c;
  }
  out += '"';
}

// ---- reports: one JSON message, then the worker exits ----------------------------------------
// kind: the SimError subclass the Python side raises.  The message may name {pc0}, {pc1}:
// source positions the Python side resolves with addr2line; {user}: the innermost of `stack`
// that lies in the kernel's own source.
[[noreturn]] static void report(const char* kind, const Thread* t, std::vector<uintptr_t> pcs, const char* fmt, ...) {
  std::lock_guard<std::mutex> guard(g_report_lock);
  std::fflush(stdout);
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  std::string out = "{\"ok\": false, \"kind\": ";
  json_str(out, kind);
  out += ", \"message\": ";
  json_str(out, msg);
  if (t && t->block) {
    char pos[160];
    std::snprintf(pos, sizeof pos, ", \"block\": [%u, %u, %u], \"thread\": [%u, %u, %u]", t->block->bid.x,
                  t->block->bid.y, t->block->bid.z, t->tid.x, t->tid.y, t->tid.z);
    out += pos;
  }
  out += ", \"pcs\": [";
  for (size_t i = 0; i < pcs.size(); ++i) {
    char b[32];
    std::snprintf(b, sizeof b, "%s%lu", i ? ", " : "", (unsigned long)pcs[i]);
    out += b;
  }
  out += "]}";
  send_message(out);
  _exit(0);
}

static std::string where(const Thread* t) {
  char b[128];
  std::snprintf(b, sizeof b, "thread (%u,%u,%u) of block (%u,%u,%u)", t->tid.x, t->tid.y, t->tid.z,
                t->block->bid.x, t->block->bid.y, t->block->bid.z);
  return b;
}

// Return addresses in this executable's code, innermost first (for faults that stop in a library).
static std::vector<uintptr_t> code_frames(uintptr_t pc) {
  std::vector<uintptr_t> out;
  if (pc >= g_text_lo && pc < g_text_hi) out.push_back(pc + 1);  // (the reader looks one byte back)
  void* frames[64];
  int n = backtrace(frames, 64);
  for (int i = 0; i < n; ++i) {
    uintptr_t f = reinterpret_cast<uintptr_t>(frames[i]);
    if (f >= g_text_lo && f < g_text_hi) out.push_back(f);
  }
  return out;
}

// ---- the fiber scheduler ------------------------------------------------------------------
static inline void yield_to_scheduler(Thread* t) { convops_sim_switch(&t->sp, t->block->scheduler_sp); }

static void note_running(Slot& s, uint32_t block, unsigned thread) {
  g_control[2 + 3 * s.index] = block + 1ull;
  g_control[3 + 3 * s.index] = thread;
}

static void complete_copies(Thread* t, unsigned below);

extern "C" void convops_sim_fiber_entry() {
  Thread* t = current();
  t->block->launch->kernel->invoke(t->block->launch->args);
  complete_copies(t, ~0u);  // a thread's copies land by its exit at the latest
  t->state = DONE;
  g_control[1 + 3 * t->block->slot->index] += 1;  // a thread finished: progress
  void* dummy;
  convops_sim_switch(&dummy, t->block->scheduler_sp);
  __builtin_unreachable();
}

static void start_fiber(Thread& t) {
  uintptr_t top = t.stack_hi & ~uintptr_t(15);
  void** sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;  // fake return address of the entry (16-byte alignment at its start)
  *--sp = reinterpret_cast<void*>(&convops_sim_fiber_entry);
  for (int i = 0; i < 6; ++i) *--sp = nullptr;
  t.sp = sp;
  t.state = READY;
  t.copies.clear();
  t.groups = 0;
}

static const char* warp_name(int kind) {
  static const char* names[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
                                "__ballot_sync", "__any_sync", "__all_sync", "__syncwarp", "__activemask",
                                "mma.sync", "ldmatrix"};
  return kind >= 0 && kind <= W_LDMATRIX ? names[kind] : "?";
}

[[noreturn]] static void fail_block(const Thread* t, const char* fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  report("barrier", t, {}, "%s", msg);
}

static unsigned source_lane(const Thread& t, unsigned lane) {
  int w = t.width, seg = lane - lane % w;
  switch (t.kind) {
    case W_SHFL: return seg + ((unsigned)t.lane_arg % w);
    case W_SHFL_UP: return (int)(lane % w) >= t.lane_arg ? lane - t.lane_arg : lane;
    case W_SHFL_DOWN: return (int)(lane % w) + t.lane_arg < w ? lane + t.lane_arg : lane;
    case W_SHFL_XOR: { unsigned s = lane ^ (unsigned)t.lane_arg; return s < (unsigned)(seg + w) && s >= (unsigned)seg ? s : lane; }
  }
  return lane;
}

// Release the warp operations that can complete: a lane waiting with mask M
// completes when every non-exited lane named in M waits at the same operation
// with the same mask.  Returns true if any completed.
static bool release_warps(Block& b, unsigned n) {
  bool any = false;
  for (unsigned w0 = 0; w0 < n; w0 += 32) {
    unsigned end = std::min(n, w0 + 32);
    unsigned exists = (end - w0 == 32) ? 0xffffffffu : ((1u << (end - w0)) - 1);
    unsigned exited = 0, ready = 0;
    for (unsigned i = w0; i < end; ++i) {
      if (b.threads[i].state == DONE) exited |= 1u << (i - w0);
      if (b.threads[i].state == READY) ready |= 1u << (i - w0);
    }
    for (unsigned i = w0; i < end; ++i) {
      Thread& t = b.threads[i];
      if (t.state != AT_WARP) continue;
      unsigned group = 0;
      if (t.kind == W_ACTIVEMASK) {  // no sync: the lanes that wait here once none of the warp can run
        if (ready || any) continue;  // (after another release this call, lanes may be about to arrive)
        for (unsigned j = w0; j < end; ++j)
          if (b.threads[j].state == AT_WARP && b.threads[j].kind == W_ACTIVEMASK && b.threads[j].site == t.site)
            group |= 1u << (j - w0);
      } else {
        unsigned lanes = t.mask & ~exited & exists;
        bool complete = true;
        for (unsigned j = 0; j < 32 && complete; ++j) {
          if (!(lanes >> j & 1u)) continue;
          Thread& u = b.threads[w0 + j];
          if (u.state != AT_WARP) { complete = false; break; }
          bool same = u.mask == t.mask && u.kind == t.kind && (t.kind == W_SYNC || u.site == t.site) &&
                      u.xbytes == t.xbytes;
          if (!same)
            fail_block(&t, "warp divergence: in block (%u,%u,%u) warp %u, lane %u waits at %s (line %ld, mask "
                       "0x%08x) and lane %u at %s (line %ld, mask 0x%08x); every lane a mask names must reach the "
                       "same warp operation with the same mask", b.bid.x, b.bid.y, b.bid.z, w0 / 32, i - w0,
                       warp_name(t.kind), t.site & 0xFFFFF, t.mask, j, warp_name(u.kind), u.site & 0xFFFFF, u.mask);
        }
        if (!complete) continue;
        if ((t.kind == W_MMA || t.kind == W_LDMATRIX) && lanes != (t.mask & exists))
          fail_block(&t, "%s (line %ld) in block (%u,%u,%u) warp %u: lanes 0x%08x exited before it; every lane of "
                     "the warp must execute a .sync.aligned instruction", warp_name(t.kind), t.site & 0xFFFFF,
                     b.bid.x, b.bid.y, b.bid.z, w0 / 32, t.mask & exists & exited);
        group = lanes;
      }
      // the operation completes for every lane in group
      uint64_t ballot = 0;
      for (unsigned j = 0; j < 32; ++j)
        if (group >> j & 1u) ballot |= (b.threads[w0 + j].value != 0) ? (1ull << j) : 0;
      uint32_t vc[32];
      for (int l = 0; l < 32; ++l) vc[l] = 0;
      for (unsigned j = 0; j < 32; ++j)
        if (group >> j & 1u)
          for (int l = 0; l < 32; ++l) vc[l] = std::max(vc[l], b.threads[w0 + j].vc[l]);
      for (unsigned j = 0; j < 32; ++j) {
        if (!(group >> j & 1u)) continue;
        Thread& u = b.threads[w0 + j];
        switch (u.kind) {
          case W_SHFL: case W_SHFL_UP: case W_SHFL_DOWN: case W_SHFL_XOR: {
            // a lane that does not take part (absent, exited, or outside the mask) gives an
            // undefined value on a GPU: here all ones bits (NaN as a float), so a use shows
            unsigned src = source_lane(u, j);
            u.result = (src == j || (group >> src & 1u)) ? b.threads[w0 + src].value : ~0ull;
            break;
          }
          case W_BALLOT: u.result = ballot; break;
          case W_ANY: u.result = ballot != 0; break;
          case W_ALL: u.result = ballot == group; break;
          case W_ACTIVEMASK: u.result = group; break;
          case W_MMA: case W_LDMATRIX: {
            char* all = static_cast<char*>(u.xdst);
            for (unsigned i = 0; i < 32; ++i) {
              if (group >> i & 1u) std::memcpy(all + i * u.xbytes, b.threads[w0 + i].xsrc, u.xbytes);
              else std::memset(all + i * u.xbytes, 0xFF, u.xbytes);
            }
            u.result = 0;
            break;
          }
          default: u.result = 0;
        }
        for (int l = 0; l < 32; ++l) u.vc[l] = vc[l];
      }
      for (unsigned j = 0; j < 32; ++j)
        if (group >> j & 1u) {
          Thread& u = b.threads[w0 + j];
          u.vc[j] += 1;
          u.state = READY;
        }
      any = true;
      b.warp_synced = true;
    }
  }
  return any;
}

// Nothing can run: name what every waiting thread waits for.
[[noreturn]] static void deadlock(Block& b, unsigned n) {
  for (unsigned i = 0; i < n; ++i) {
    Thread& t = b.threads[i];
    if (t.state != AT_WARP) continue;
    unsigned w0 = i - i % 32;
    for (unsigned j = 0; j < 32 && w0 + j < n; ++j) {
      Thread& u = b.threads[w0 + j];
      if (!(t.mask >> j & 1u) || u.state == DONE || u.state == AT_WARP) continue;
      fail_block(&t, "warp operation deadlock: in block (%u,%u,%u), lane %u of warp %u waits at %s (line %ld) "
                 "with mask 0x%08x, which names lane %u, but that lane waits at __syncthreads (line %ld) and "
                 "never arrives", b.bid.x, b.bid.y, b.bid.z, i - w0, w0 / 32, warp_name(t.kind), t.site & 0xFFFFF,
                 t.mask, j, u.site & 0xFFFFF);
    }
    fail_block(&t, "warp operation deadlock: in block (%u,%u,%u), lane %u of warp %u waits at %s (line %ld) "
               "with mask 0x%08x, which the other lanes never complete", b.bid.x, b.bid.y, b.bid.z, i - w0, w0 / 32,
               warp_name(t.kind), t.site & 0xFFFFF, t.mask);
  }
  fail_block(nullptr, "deadlock in block (%u,%u,%u)", b.bid.x, b.bid.y, b.bid.z);
}

static void run_block(Block& b) {
  const unsigned n = b.launch->nthreads;
  for (unsigned i = 0; i < n; ++i) start_fiber(b.threads[i]);
  while (true) {
    bool progressed = false;
    for (unsigned k = 0; k < n; ++k) {
      unsigned i = b.launch->order ? n - 1 - k : k;
      Thread& t = b.threads[i];
      if (t.state != READY) continue;
      note_running(*b.slot, b.linear, i);
      convops_sim_switch(&b.scheduler_sp, t.sp);
      progressed = true;
    }
    if (release_warps(b, n)) continue;
    if (progressed) continue;
    long site = -1;
    unsigned waiting = 0, done = 0, count = 0;
    bool all_and = true, any_or = false;
    const Thread* first = nullptr;
    for (unsigned i = 0; i < n; ++i) {
      Thread& t = b.threads[i];
      if (t.state == DONE) { ++done; continue; }
      if (t.state == AT_WARP) deadlock(b, n);
      if (site == -1) { site = t.site; first = &t; }
      else if (site != t.site)
        fail_block(&t, "barrier divergence: block (%u,%u,%u) threads wait at different __syncthreads "
                   "(lines %ld and %ld)", b.bid.x, b.bid.y, b.bid.z, site & 0xFFFFF, t.site & 0xFFFFF);
      ++waiting;
      count += t.bar_value != 0;
      all_and &= t.bar_value != 0;
      any_or |= t.bar_value != 0;
    }
    if (waiting == 0) return;
    if (done > 0)
      fail_block(first, "barrier divergence: block (%u,%u,%u): %u threads wait at __syncthreads (line %ld) that "
                 "%u exited threads never reach", b.bid.x, b.bid.y, b.bid.z, waiting, site & 0xFFFFF, done);
    b.epoch += 1;
    for (unsigned i = 0; i < n; ++i) {
      Thread& t = b.threads[i];
      t.result = t.kind == 1 ? count : t.kind == 2 ? all_and : any_or;
      t.state = READY;
    }
  }
}

// ---- memory: bounds and races --------------------------------------------------------------
static inline bool ordered(const Access& a, const Access& now, const Thread* t) {
  if (a.block != now.block) return false;
  if (a.thread == now.thread) return true;
  if (a.epoch < now.epoch) return true;
  return (a.thread >> 5) == (now.thread >> 5) && a.clock <= t->vc[a.thread & 31];
}

static void describe(char* out, size_t len, const Access& a) {
  unsigned bx = g_launch->grid.x, by = g_launch->grid.y;
  unsigned tx = g_launch->block.x, ty = g_launch->block.y;
  std::snprintf(out, len, "%s by thread (%u,%u,%u) of block (%u,%u,%u)",
                (a.flags & 4) ? "an atomic access" : (a.flags & 2) ? "a write" : "a read",
                a.thread % tx, (a.thread / tx) % ty, a.thread / (tx * ty), a.block % bx, (a.block / bx) % by,
                a.block / (bx * by));
}

struct Place {  // what a race report calls the address
  const char* what;  // "argument", "shared", "dynamic", "device"
  long index;        // argument number
  uintptr_t offset;  // byte offset in the buffer or block
  uintptr_t base;    // where the buffer or block starts
};

static void place_name(char* out, size_t len, const Place& p) {
  if (!std::strcmp(p.what, "argument"))
    std::snprintf(out, len, "argument %ld at byte offset %lu", p.index, (unsigned long)p.offset);
  else if (!std::strcmp(p.what, "shared"))
    std::snprintf(out, len, "static shared memory at byte offset %lu", (unsigned long)p.offset);
  else if (!std::strcmp(p.what, "dynamic"))
    std::snprintf(out, len, "dynamic shared memory at byte offset %lu", (unsigned long)p.offset);
  else
    std::snprintf(out, len, "__device__ memory at address %#lx", (unsigned long)(p.base + p.offset));
}

[[noreturn]] static void race(const Thread* t, const Access& now, const Access& before, const Place& p) {
  char a[160], b[160], where_text[160];
  describe(a, sizeof a, now);
  describe(b, sizeof b, before);
  place_name(where_text, sizeof where_text, p);
  report("race", t, {now.pc, before.pc}, "data race on %s: %s at {pc0} conflicts with %s at {pc1}, with no "
         "__syncthreads or warp synchronization between them%s", where_text, a, b,
         now.block != before.block ? " (different blocks are never ordered)" : "");
}

// Record an access to one cell; `now.bytes` is the mask of its bytes touched, `shared` says stale
// records of other blocks are not conflicts (each block has its own shared memory).
static inline void shadow_access(Cell& c, const Access& now, bool shared, const Thread* t, const Place& place) {
  bool write = now.flags & 2, atomic = now.flags & 4;
  auto live = [&](const Access& a) { return (a.flags & 1) && !(shared && a.block != now.block); };
  auto conflicts = [&](const Access& a) {
    if (!live(a) || !(a.bytes & now.bytes) || (a.block == now.block && a.thread == now.thread)) return false;
    if ((a.flags & 4) && atomic) return false;
    return !ordered(a, now, t);
  };
  if (conflicts(c.w)) race(t, now, c.w, place);
  if (write) {
    if (conflicts(c.r0)) race(t, now, c.r0, place);
    if (conflicts(c.r1)) race(t, now, c.r1, place);
    c.w = now;
    c.r0.flags = c.r1.flags = 0;
    return;
  }
  // keep two reads: the same thread's is replaced; then a read ordered before this one (covered
  // by it); else the one most like this read (same block, same warp), so reads from other warps
  // and blocks -- the races hardest to see -- are kept
  auto same_thread = [&](const Access& a) { return live(a) && a.block == now.block && a.thread == now.thread; };
  auto likeness = [&](const Access& a) {
    if (!live(a)) return 4;
    if (ordered(a, now, t)) return 3;
    return (a.block == now.block) + (a.block == now.block && (a.thread >> 5) == (now.thread >> 5));
  };
  if (same_thread(c.r0)) c.r0 = now;
  else if (same_thread(c.r1)) c.r1 = now;
  else if (likeness(c.r0) > likeness(c.r1)) c.r0 = now;
  else { c.r1 = c.r0; c.r0 = now; }
}

// Every cell [addr, addr + size) touches, with its byte mask.
static void shadow_span(Cell* cells, uintptr_t base, unsigned granule, uintptr_t addr, unsigned size, bool shared,
                        const Thread* t, bool write, bool atomic, uintptr_t pc, Place place) {
  Access now;
  now.block = t->block->linear;
  now.epoch = t->block->epoch;
  now.thread = (uint16_t)t->linear;
  now.clock = t->vc[t->linear & 31];
  now.pc = (uint32_t)pc;
  now.flags = 1 | (write ? 2 : 0) | (atomic ? 4 : 0);
  uintptr_t end = addr + size;
  for (uintptr_t cell = (addr - base) / granule; base + cell * granule < end; ++cell) {
    uintptr_t lo = std::max(addr, base + cell * granule), hi = std::min(end, base + (cell + 1) * granule);
    now.bytes = (uint16_t)(((1u << (hi - lo)) - 1) << (lo - base - cell * granule));
    place.offset = lo - base;
    place.base = base;
    shadow_access(cells[cell], now, shared, t, place);
  }
}

static bool in_pairs(const std::vector<std::pair<uint64_t, uint64_t>>& v, uintptr_t base, uintptr_t addr,
                     unsigned size) {
  for (auto& p : v)
    if (addr >= base + p.first && addr + size <= base + p.first + p.second) return true;
  return false;
}

[[noreturn]] static void bad_address(const Thread* t, uintptr_t addr, unsigned size, bool write, uintptr_t pc) {
  const char* rw = write ? "write" : "read";
  const Launch& L = *t->block->launch;
  const Slot& s = *t->block->slot;
  if (addr < kPage)
    report("oob", t, {pc}, "invalid %s of %u bytes at address %#lx (a null pointer) by %s at {pc0}", rw, size,
           (unsigned long)addr, where(t).c_str());
  if (addr - g_fib_lo < g_fib_size)
    report("oob", t, {pc}, "%s of %u bytes at %#lx in another thread's local memory (stack) by %s at {pc0}", rw,
           size, (unsigned long)addr, where(t).c_str());
  // the nearest of what the kernel may touch
  struct Near { const char* what; long arg; uintptr_t lo, hi; } best{nullptr, 0, 0, 0};
  long best_d = 0;
  auto consider = [&](const char* what, long arg, uintptr_t lo, uintptr_t hi) {
    long d = addr < lo ? (long)(lo - addr) : addr + size > hi ? (long)(addr + size - hi) : 0;
    if (!best.what || d < best_d) { best = {what, arg, lo, hi}; best_d = d; }
  };
  for (const Span& r : L.regions) consider("argument", r.arg, r.lo, r.hi);
  if (s.tls_hi > s.tls_lo) consider("static shared memory", -1, s.tls_lo, s.tls_hi);
  uintptr_t dyn = reinterpret_cast<uintptr_t>(s.dyn);
  if (dyn) consider("dynamic shared memory", -1, dyn, dyn + L.dyn_bytes);
  for (auto& v : L.device) consider("__device__ variable", -1, v.first, v.first + v.second);
  if (best.what && best_d <= (1L << 40)) {
    long off = (long)(addr - best.lo);
    const char* side = off < 0 ? "before the start" : (addr + size > best.hi) ? "past the end" : "between variables";
    if (best.arg >= 0)
      report("oob", t, {pc}, "out-of-bounds %s of %u bytes to argument %ld (%lu bytes) %s, at byte offset %ld, by "
             "%s at {pc0}", rw, size, best.arg, (unsigned long)(best.hi - best.lo), side, off, where(t).c_str());
    if (!std::strcmp(best.what, "static shared memory"))
      report("oob", t, {pc}, "out-of-bounds %s of %u bytes at static shared memory byte offset %ld, outside every "
             "__shared__ variable of the kernel, by %s at {pc0}", rw, size, off, where(t).c_str());
    if (!std::strcmp(best.what, "dynamic shared memory"))
      report("oob", t, {pc}, "out-of-bounds %s of %u bytes at byte offset %ld of dynamic shared memory (%lu bytes "
             "launched) by %s at {pc0}", rw, size, off, (unsigned long)L.dyn_bytes, where(t).c_str());
    report("oob", t, {pc}, "out-of-bounds %s of %u bytes at address %#lx, outside every __device__ variable "
           "(nearest: %lu bytes at %#lx) by %s at {pc0}", rw, size, (unsigned long)addr,
           (unsigned long)(best.hi - best.lo), (unsigned long)best.lo, where(t).c_str());
  }
  report("oob", t, {pc}, "invalid %s of %u bytes at address %#lx (not inside any argument, shared memory, "
         "__device__ variable or the thread's stack; device-side malloc is not supported) by %s at {pc0}", rw, size,
         (unsigned long)addr, where(t).c_str());
}

// An access to shared memory that an incomplete cp.async will write: the
// issuing thread has not yet waited for the copy's group (cp.async.wait_group),
// so on a GPU the bytes may or may not have landed.
static void check_pending(const Thread* t, const uint8_t* map, uintptr_t addr, unsigned size, bool write, uintptr_t pc,
                          const char* what, uintptr_t offset) {
  bool hit = false;
  for (unsigned i = 0; i < size && !hit; ++i) hit = map[i] != 0;
  if (!hit) return;
  const Block& b = *t->block;
  for (unsigned i = 0; i < b.launch->nthreads; ++i)
    for (const Thread::Copy& c : b.threads[i].copies)
      if (addr < c.dst + c.bytes && c.dst < addr + size)
        report("race", t, {pc, c.pc}, "%s of %u bytes of %s at byte offset %lu by %s at {pc0} before the cp.async "
               "there completes: thread (%u,%u,%u) issued it at {pc1} (group %u) and has not waited for it "
               "(cp.async.wait_group) yet", write ? "write" : "read", size, what, (unsigned long)offset,
               where(t).c_str(), b.threads[i].tid.x, b.threads[i].tid.y, b.threads[i].tid.z, c.group);
  report("race", t, {pc}, "%s of %u bytes of %s at byte offset %lu by %s at {pc0} before a cp.async there completes",
         write ? "write" : "read", size, what, (unsigned long)offset, where(t).c_str());
}

static void access(uintptr_t addr, unsigned size, bool write, bool atomic, uintptr_t pc, bool aligned) {
  Thread* t = current();
  if (!t) return;
  if (addr - t->stack_lo < t->stack_hi - t->stack_lo) return;  // the thread's own locals
  Launch& L = *t->block->launch;
  if (aligned && size > 1 && (addr & (size - 1)))
    report("oob", t, {pc}, "misaligned %s of %u bytes at address %#lx (a GPU faults: accesses must be aligned to "
           "their size) by %s at {pc0}", write ? "write" : "read", size, (unsigned long)addr, where(t).c_str());
  for (Span& r : L.regions) {
    if (addr >= r.lo && addr < r.hi) {
      if (addr + size > r.hi) bad_address(t, addr, size, write, pc);
      if (L.race) shadow_span(r.shadow, r.lo, r.granule, addr, size, false, t, write, atomic, pc, {"argument", r.arg, 0, 0});
      return;
    }
  }
  Slot& s = *t->block->slot;
  if (addr >= s.tls_lo && addr + size <= s.tls_hi) {
    if (!in_pairs(L.shared, s.tls_lo, addr, size)) bad_address(t, addr, size, write, pc);
    if (s.pending) check_pending(t, &s.pend_tls[addr - s.tls_lo], addr, size, write, pc, "static shared memory", addr - s.tls_lo);
    if (L.race) shadow_span(s.tls_shadow, s.tls_lo, 4, addr, size, true, t, write, atomic, pc, {"shared", 0, 0, 0});
    return;
  }
  uintptr_t dyn = reinterpret_cast<uintptr_t>(s.dyn);
  if (addr >= dyn && addr + size <= dyn + L.dyn_bytes) {
    if (s.pending) check_pending(t, &s.pend_dyn[addr - dyn], addr, size, write, pc, "dynamic shared memory", addr - dyn);
    if (L.race) shadow_span(s.dyn_shadow, dyn, 4, addr, size, true, t, write, atomic, pc, {"dynamic", 0, 0, 0});
    return;
  }
  if ((addr >= kdata_lo() && addr < kdata_hi()) || (addr >= kbss_lo() && addr < kbss_hi())) {
    if (!in_pairs(L.device, 0, addr, size)) bad_address(t, addr, size, write, pc);
    if (L.race && L.device_shadow) {
      uintptr_t base = std::min(kdata_lo() ? kdata_lo() : kbss_lo(), kbss_lo() ? kbss_lo() : kdata_lo());
      shadow_span(L.device_shadow, base, 4, addr, size, false, t, write, atomic, pc, {"device", 0, 0, 0});
    }
    return;
  }
  if (!write)
    for (auto& seg : g_static)
      if (addr >= seg.first && addr + size <= seg.second) return;  // constants, string literals, tables
  bad_address(t, addr, size, write, pc);
}

// ---- launching -------------------------------------------------------------------------------
// A slot's fibers: the header page and the stack of each region become
// accessible; the guard between them stays PROT_NONE.
static void setup_slot(Slot& s) {
  if (s.started) return;
  s.started = true;
  s.fibers = reinterpret_cast<char*>(g_fib_lo + s.index * (size_t)kMaxThreads * g_region_size);
  for (int i = 0; i < kMaxThreads; ++i) {
    char* region = s.fibers + (size_t)i * g_region_size;
    if (mprotect(region, kPage, PROT_READ | PROT_WRITE) ||
        mprotect(region + g_region_size - g_stack_bytes, g_stack_bytes, PROT_READ | PROT_WRITE)) {
      std::perror("convops sim worker: stacks");
      _exit(3);
    }
  }
}

// Dynamic shared memory: its own mapping, with unmapped pages after it.
static void reserve_dynamic(Slot& s, size_t bytes) {
  if (bytes <= s.dyn_capacity && s.dyn) return;
  if (s.dyn) munmap(s.dyn, s.dyn_capacity + 16 * kPage);
  s.dyn_capacity = std::max<size_t>((bytes + kPage - 1) & ~(kPage - 1), kPage);
  void* m = mmap(nullptr, s.dyn_capacity + 16 * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED || mprotect(m, s.dyn_capacity, PROT_READ | PROT_WRITE)) {
    std::perror("convops sim worker: dynamic shared memory");
    _exit(3);
  }
  s.dyn = static_cast<char*>(m);
}

// Signal handlers run on an alternate stack (a stack overflow leaves none).
// (No thread_local here: this executable's TLS block is the kernels' static
// shared memory.)
static void alt_stack_for_thread() {
  stack_t old;
  if (sigaltstack(nullptr, &old) == 0 && !(old.ss_flags & SS_DISABLE)) return;
  stack_t ss;
  ss.ss_sp = std::malloc(1 << 16);
  ss.ss_size = 1 << 16;
  ss.ss_flags = 0;
  sigaltstack(&ss, nullptr);
}

static void tls_range(Slot& s) {
  struct Found { uintptr_t lo; size_t size; } found{0, 0};
  dl_iterate_phdr([](dl_phdr_info* info, size_t, void* data) -> int {
    Found* f = static_cast<Found*>(data);
    for (int i = 0; i < info->dlpi_phnum; ++i)
      if (info->dlpi_phdr[i].p_type == PT_TLS) {
        f->lo = reinterpret_cast<uintptr_t>(info->dlpi_tls_data);
        f->size = info->dlpi_phdr[i].p_memsz;
      }
    return 1;  // the first object is the executable
  }, &found);
  s.tls_lo = found.lo;
  s.tls_hi = found.lo + found.size;
}

// Static and dynamic shared memory hold garbage at the start of every block:
// 0xFF bytes, a NaN in every float format and -1 in every integer one.
static void fill_shared(Slot& s, const Launch& L) {
  for (auto& v : L.shared) std::memset(reinterpret_cast<void*>(s.tls_lo + v.first), 0xFF, v.second);
  if (L.dyn_bytes) std::memset(s.dyn, 0xFF, L.dyn_bytes);
}

static void run_blocks(Launch& L, Slot& s) {
  setup_slot(s);
  alt_stack_for_thread();
  tls_range(s);
  reserve_dynamic(s, L.dyn_bytes);
  s.pend_tls.assign(s.tls_hi - s.tls_lo, 0);
  s.pend_dyn.assign(L.dyn_bytes, 0);
  s.pending = 0;
  Thread* threads = new Thread[L.nthreads];
  Block b;
  b.launch = &L;
  b.slot = &s;
  b.threads = threads;
  for (unsigned i = 0; i < L.nthreads; ++i) {
    Thread& t = threads[i];
    t.linear = i;
    t.tid = {i % L.block.x, (i / L.block.x) % L.block.y, i / (L.block.x * L.block.y)};
    t.block = &b;
    char* region = s.fibers + (size_t)i * g_region_size;
    *reinterpret_cast<Thread**>(region) = &t;
    t.stack_hi = reinterpret_cast<uintptr_t>(region) + g_region_size;
    t.stack_lo = t.stack_hi - g_stack_bytes;
    t.guard_lo = reinterpret_cast<uintptr_t>(region) + kPage;
  }
  unsigned long nblocks = (unsigned long)L.grid.x * L.grid.y * L.grid.z;
  while (true) {
    unsigned long id = L.next.fetch_add(1);
    if (id >= nblocks) break;
    b.bid = {unsigned(id % L.grid.x), unsigned((id / L.grid.x) % L.grid.y),
             unsigned(id / ((unsigned long)L.grid.x * L.grid.y))};
    b.linear = (uint32_t)id;
    b.epoch = 0;
    if (b.warp_synced) {  // clocks only move at warp operations
      for (unsigned i = 0; i < L.nthreads; ++i) {
        for (int l = 0; l < 32; ++l) threads[i].vc[l] = 0;
        threads[i].vc[i & 31] = 1;
      }
      b.warp_synced = false;
    }
    fill_shared(s, L);
    run_block(b);
  }
  g_control[2 + 3 * s.index] = 0;  // this OS thread is done
  delete[] threads;
}

// ---- protocol -------------------------------------------------------------------------------
// Request (little endian, every field 8 bytes): the header, then n_regions argument buffers
// (offset in the arena, bytes, shadow cell size, first argument), n_shared (offset in the TLS
// block, size) records of the kernel's static shared variables, n_device (address, size) records
// of the module's __device__ variables, n_args Arg records, then the scalar bytes.
struct ReqHeader {
  uint64_t magic, kernel, grid[3], block[3], dyn_bytes, order, race, threads, quiet, device_state, n_args,
      n_regions, n_shared, n_device, arena_len;
};
struct ReqRecord {
  uint64_t a, b, c, d;
};
constexpr uint64_t kMagic = 0x636f6e766f707332ull;  // "convops2"
constexpr size_t kGap = 64ull << 20;                // unmapped around every argument buffer

static void map_arena(int fd, size_t len) {
  if (g_arena) munmap(g_arena, g_arena_len);
  g_arena = static_cast<char*>(mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  if (g_arena == MAP_FAILED) { std::perror("convops sim worker: mmap arena"); _exit(3); }
  g_arena_len = len;
  g_control = reinterpret_cast<volatile uint64_t*>(g_arena);
  if (g_arena_fd >= 0) close(g_arena_fd);
  g_arena_fd = fd;
}

static Cell* shadow_cells(size_t n, const char* what) {
  Cell* c = static_cast<Cell*>(std::calloc(n + 1, sizeof(Cell)));
  if (!c)
    report("launch", nullptr, {}, "the race detector could not allocate %lu bytes of shadow memory for %s; pass "
           "check_races=False or use smaller arrays", (unsigned long)((n + 1) * sizeof(Cell)), what);
  return c;
}

// __device__ state: kept across launches (as on a GPU), but a launch's second run starts
// from the state its first run started from.
static void device_state(uint64_t how) {
  uintptr_t lo = kdata_lo(), hi = kdata_hi(), blo = kbss_lo(), bhi = kbss_hi();
  size_t data = lo ? hi - lo : 0, bss = blo ? bhi - blo : 0;
  if (how == 1) {  // snapshot
    g_device_snapshot.resize(data + bss);
    if (data) std::memcpy(g_device_snapshot.data(), reinterpret_cast<void*>(lo), data);
    if (bss) std::memcpy(g_device_snapshot.data() + data, reinterpret_cast<void*>(blo), bss);
  } else if (how == 2 && g_device_snapshot.size() == data + bss) {  // restore
    if (data) std::memcpy(reinterpret_cast<void*>(lo), g_device_snapshot.data(), data);
    if (bss) std::memcpy(reinterpret_cast<void*>(blo), g_device_snapshot.data() + data, bss);
  }
}

static void launch(const char* msg) {
  ReqHeader h;
  std::memcpy(&h, msg, sizeof h);
  const ReqRecord* rr = reinterpret_cast<const ReqRecord*>(msg + sizeof h);
  const ReqRecord* rs = rr + h.n_regions;
  const ReqRecord* rd = rs + h.n_shared;
  const ReqRecord* ra = rd + h.n_device;
  const char* blob = reinterpret_cast<const char*>(ra + h.n_args);
  Launch L;
  L.kernel = &convops_sim_kernels[h.kernel];
  L.grid = dim3(h.grid[0], h.grid[1], h.grid[2]);
  L.block = dim3(h.block[0], h.block[1], h.block[2]);
  L.nthreads = L.block.x * L.block.y * L.block.z;
  L.dyn_bytes = h.dyn_bytes;
  L.order = (int)h.order;
  L.race = h.race != 0;
  for (uint64_t i = 0; i < h.n_shared; ++i) L.shared.push_back({rs[i].a, rs[i].b});
  for (uint64_t i = 0; i < h.n_device; ++i) L.device.push_back({rd[i].a, rd[i].b});
  g_launch = &L;
  device_state(h.device_state);
  for (uint64_t i = 0; i < h.n_regions; ++i) {  // argument buffers, each mapped between unmapped gaps
    Span r;
    size_t inpage = rr[i].a & (kPage - 1);  // the buffer's address modulo 256 is the host array's
    size_t data = (inpage + rr[i].b + kPage - 1) & ~(kPage - 1);
    r.map_len = data + 2 * kGap;
    r.map = mmap(nullptr, r.map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    char* base = static_cast<char*>(r.map) + kGap;
    if (data) {  // the arena's pages again, at an address with nothing mapped around it
      void* got = mmap(base, data, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, g_arena_fd, rr[i].a - inpage);
      if (got == MAP_FAILED) { std::perror("convops sim worker: map argument"); _exit(3); }
    }
    r.lo = reinterpret_cast<uintptr_t>(base) + inpage;
    r.hi = r.lo + rr[i].b;
    r.granule = (unsigned)std::max<uint64_t>(1, rr[i].c);
    r.arg = (int)rr[i].d;
    if (L.race) r.shadow = shadow_cells((rr[i].b + r.granule - 1) / r.granule, "an argument");
    L.regions.push_back(r);
  }
  std::vector<void*> args(h.n_args);
  std::vector<uintptr_t> pointers(h.n_args);
  for (uint64_t i = 0; i < h.n_args; ++i) {
    if (ra[i].a) {
      pointers[i] = L.regions[ra[i].b].lo + ra[i].c;
      args[i] = &pointers[i];
    } else {
      args[i] = const_cast<char*>(blob + ra[i].c);
    }
  }
  L.args = args.data();
  unsigned long nblocks = (unsigned long)L.grid.x * L.grid.y * L.grid.z;
  unsigned workers = L.race ? 1u : std::max(1u, std::min<unsigned>(std::thread::hardware_concurrency(),
                                                                    (unsigned)std::min<unsigned long>(nblocks, kMaxSlots)));
  if (h.threads) workers = std::min<unsigned>(workers, (unsigned)h.threads);
  if (L.race) {
    Slot& s = g_slots[0];
    tls_range(s);
    s.tls_shadow = shadow_cells((s.tls_hi - s.tls_lo) / 4 + 1, "static shared memory");
    s.dyn_shadow = shadow_cells(L.dyn_bytes / 4 + 1, "dynamic shared memory");
    uintptr_t lo = std::min(kdata_lo() ? kdata_lo() : kbss_lo(), kbss_lo() ? kbss_lo() : kdata_lo());
    uintptr_t hi = std::max(kdata_hi(), kbss_hi());
    if (lo && hi > lo) L.device_shadow = shadow_cells((hi - lo) / 4 + 1, "__device__ memory");
  }
  int saved_stdout = -1;
  if (h.quiet) {  // a rerun prints nothing: printf output appears once, as on a GPU
    std::fflush(stdout);
    saved_stdout = dup(1);
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    close(null);
  }
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < workers; ++i) pool.emplace_back([&L, i]() { run_blocks(L, g_slots[i]); });
  run_blocks(L, g_slots[0]);
  for (auto& t : pool) t.join();
  std::fflush(stdout);
  if (saved_stdout >= 0) {
    dup2(saved_stdout, 1);
    close(saved_stdout);
  }
  for (Span& r : L.regions) {
    munmap(r.map, r.map_len);
    std::free(r.shadow);
  }
  if (L.race) {
    std::free(g_slots[0].tls_shadow);
    std::free(g_slots[0].dyn_shadow);
    g_slots[0].tls_shadow = g_slots[0].dyn_shadow = nullptr;
    std::free(L.device_shadow);
  }
  g_launch = nullptr;
  send_message("{\"ok\": true}");
}

// The handshake: every kernel's function address and signature.
static void hello() {
  std::string out = "{\"ok\": true, \"kernels\": [";
  std::vector<ParamInfo> info(1024);
  for (int k = 0; k < convops_sim_kernel_count; ++k) {
    int n = convops_sim_kernels[k].signature(info.data(), (int)info.size());
    char head[96];
    std::snprintf(head, sizeof head, "%s{\"address\": %lu, \"params\": [", k ? ", " : "",
                  (unsigned long)reinterpret_cast<uintptr_t>(convops_sim_kernels[k].function));
    out += head;
    for (int i = 0; i < n && i < (int)info.size(); ++i) {
      char b[128];
      std::snprintf(b, sizeof b, "%s{\"size\": %ld, \"pointer\": %d, \"pointee\": %ld, \"kind\": \"%c\", \"elem\": %d, "
                    "\"type\": ", i ? ", " : "", info[i].size, info[i].is_pointer, info[i].pointee_size,
                    info[i].kind, info[i].elem_size);
      out += b;
      json_str(out, info[i].type);
      out += "}";
    }
    out += "]}";
  }
  out += "]}";
  send_message(out);
}

// ---- faults --------------------------------------------------------------------------------
static void on_signal(int sig, siginfo_t* info, void* uc_) {
  ucontext_t* uc = static_cast<ucontext_t*>(uc_);
  uintptr_t sp = uc->uc_mcontext.gregs[REG_RSP];
  uintptr_t pc = uc->uc_mcontext.gregs[REG_RIP];
  uintptr_t addr = reinterpret_cast<uintptr_t>(info->si_addr);
  Thread* t = fiber_at(sp);
  const char* name = sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS" : sig == SIGFPE ? "SIGFPE"
                   : sig == SIGILL ? "SIGILL" : sig == SIGABRT ? "SIGABRT" : "a signal";
  if (t && (sig == SIGSEGV || sig == SIGBUS) && addr >= t->guard_lo && addr < t->stack_lo)
    report("stack", t, {pc + 1}, "stack overflow: %s used more than its %lu-byte stack (config.sim_stack_bytes) at "
           "{pc0}", where(t).c_str(), (unsigned long)g_stack_bytes);
  std::vector<uintptr_t> frames = code_frames(pc);
  if (t && sig == SIGFPE)
    report("fault", t, frames, "arithmetic fault (%s: integer division by zero or overflow) in %s at {user}", name,
           where(t).c_str());
  if (t && (sig == SIGSEGV || sig == SIGBUS))
    report("oob", t, frames, "invalid access at address %#lx (%s, in code the simulator does not instrument: a "
           "library function such as memcpy or a math routine) by %s at {user}", (unsigned long)addr, name,
           where(t).c_str());
  if (t)
    report("fault", t, frames, "%s (abort, an uncaught exception or a trap) in %s at {user}", name, where(t).c_str());
  report("fault", nullptr, frames, "%s in the simulator outside a kernel thread at {user} (address %#lx)", name,
         (unsigned long)addr);
}

static void install_handlers() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigaction(sig, &sa, nullptr);
}

}  // namespace sim

// ---- hooks the instrumented kernel code calls -------------------------------------------------
using sim::access;
#define SIM_PC reinterpret_cast<uintptr_t>(__builtin_return_address(0))
extern "C" {
void __tsan_init() {}
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
void __tsan_vptr_update(void**, void*) {}
void __tsan_vptr_read(void**) {}
#define SIM_RW(N)                                                                                     \
  void __tsan_read##N(void* a) { access(reinterpret_cast<uintptr_t>(a), N, false, false, SIM_PC, true); } \
  void __tsan_write##N(void* a) { access(reinterpret_cast<uintptr_t>(a), N, true, false, SIM_PC, true); } \
  void __tsan_unaligned_read##N(void* a) { access(reinterpret_cast<uintptr_t>(a), N, false, false, SIM_PC, false); } \
  void __tsan_unaligned_write##N(void* a) { access(reinterpret_cast<uintptr_t>(a), N, true, false, SIM_PC, false); }
SIM_RW(1) SIM_RW(2) SIM_RW(4) SIM_RW(8) SIM_RW(16)
void __tsan_read_range(void* a, unsigned long n) {
  if (n) access(reinterpret_cast<uintptr_t>(a), (unsigned)n, false, false, SIM_PC, false);
}
void __tsan_write_range(void* a, unsigned long n) {
  if (n) access(reinterpret_cast<uintptr_t>(a), (unsigned)n, true, false, SIM_PC, false);
}
void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
void __tsan_atomic_signal_fence(int) {}

#define SIM_ATOMIC(N, T)                                                                                       \
  T __tsan_atomic##N##_load(const volatile T* a, int) {                                                        \
    access(reinterpret_cast<uintptr_t>(a), sizeof(T), false, true, SIM_PC, true);                             \
    return __atomic_load_n(a, __ATOMIC_SEQ_CST);                                                               \
  }                                                                                                            \
  void __tsan_atomic##N##_store(volatile T* a, T v, int) {                                                     \
    access(reinterpret_cast<uintptr_t>(a), sizeof(T), true, true, SIM_PC, true);                              \
    __atomic_store_n(a, v, __ATOMIC_SEQ_CST);                                                                  \
  }                                                                                                            \
  T __tsan_atomic##N##_exchange(volatile T* a, T v, int) {                                                     \
    access(reinterpret_cast<uintptr_t>(a), sizeof(T), true, true, SIM_PC, true);                              \
    return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);                                                        \
  }                                                                                                            \
  T __tsan_atomic##N##_fetch_add(volatile T* a, T v, int) {                                                    \
    access(reinterpret_cast<uintptr_t>(a), sizeof(T), true, true, SIM_PC, true);                              \
    return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);                                                         \
  }                                                                                                            \
  T __tsan_atomic##N##_fetch_sub(volatile T* a, T v, int) {                                                    \
    access(reinterpret_cast<uintptr_t>(a), sizeof(T), true, true, SIM_PC, true);                              \
    return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST);                                                         \
  }                                                                                                            \
  T __tsan_atomic##N##_fetch_and(volatile T* a, T v, int) {                                                    \
    access(reinterpret_cast<uintptr_t>(a), sizeof(T), true, true, SIM_PC, true);                              \
    return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST);                                                         \
  }                                                                                                            \
  T __tsan_atomic##N##_fetch_or(volatile T* a, T v, int) {                                                     \
    access(reinterpret_cast<uintptr_t>(a), sizeof(T), true, true, SIM_PC, true);                              \
    return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST);                                                          \
  }                                                                                                            \
  T __tsan_atomic##N##_fetch_xor(volatile T* a, T v, int) {                                                    \
    access(reinterpret_cast<uintptr_t>(a), sizeof(T), true, true, SIM_PC, true);                              \
    return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST);                                                         \
  }                                                                                                            \
  T __tsan_atomic##N##_fetch_nand(volatile T* a, T v, int) {                                                   \
    access(reinterpret_cast<uintptr_t>(a), sizeof(T), true, true, SIM_PC, true);                              \
    return __atomic_fetch_nand(a, v, __ATOMIC_SEQ_CST);                                                        \
  }                                                                                                            \
  int __tsan_atomic##N##_compare_exchange_strong(volatile T* a, T* c, T v, int, int) {                         \
    access(reinterpret_cast<uintptr_t>(a), sizeof(T), true, true, SIM_PC, true);                              \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                    \
  }                                                                                                            \
  int __tsan_atomic##N##_compare_exchange_weak(volatile T* a, T* c, T v, int, int) {                           \
    access(reinterpret_cast<uintptr_t>(a), sizeof(T), true, true, SIM_PC, true);                              \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                    \
  }                                                                                                            \
  T __tsan_atomic##N##_compare_exchange_val(volatile T* a, T c, T v, int, int) {                               \
    access(reinterpret_cast<uintptr_t>(a), sizeof(T), true, true, SIM_PC, true);                              \
    __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                          \
    return c;                                                                                                  \
  }
SIM_ATOMIC(8, uint8_t) SIM_ATOMIC(16, uint16_t) SIM_ATOMIC(32, uint32_t) SIM_ATOMIC(64, uint64_t)

// UBSan (-fsanitize=integer-divide-by-zero,bounds,...; -fno-sanitize-recover): the compiler passes
// the source position; the value handles are the operands for integers that fit a pointer.
struct SimSourceLocation {
  const char* file;
  uint32_t line, column;
};
[[noreturn]] static void ub(const void* data, const char* what) {
  const SimSourceLocation* loc = static_cast<const SimSourceLocation*>(data);
  sim::Thread* t = sim::current();
  sim::report("fault", t, {}, "%s at %s:%u:%u%s%s", what, loc->file, loc->line, loc->column, t ? " in " : "",
              t ? sim::where(t).c_str() : "");
}
void __ubsan_handle_divrem_overflow_abort(void* data, void*, void* rhs) {
  ub(data, rhs == nullptr ? "integer division by zero" : "integer division overflow");
}
void __ubsan_handle_divrem_overflow(void* data, void* lhs, void* rhs) { __ubsan_handle_divrem_overflow_abort(data, lhs, rhs); }
void __ubsan_handle_out_of_bounds_abort(void* data, void*) { ub(data, "array index out of bounds"); }
void __ubsan_handle_out_of_bounds(void* data, void* i) { __ubsan_handle_out_of_bounds_abort(data, i); }
void __ubsan_handle_builtin_unreachable(void* data) { ub(data, "__builtin_unreachable() reached"); }
void __ubsan_handle_missing_return(void* data) { ub(data, "end of a function that returns a value reached"); }
void __ubsan_handle_vla_bound_not_positive_abort(void* data, void*) { ub(data, "variable-length array of size <= 0"); }
void __ubsan_handle_vla_bound_not_positive(void* data, void* v) { __ubsan_handle_vla_bound_not_positive_abort(data, v); }
// -fsanitize=alignment: an access through a pointer not aligned for its type (a GPU faults).
struct SimTypeDescriptor {
  uint16_t kind, info;
  char name[1];
};
struct SimTypeMismatch {
  SimSourceLocation loc;
  const SimTypeDescriptor* type;
  unsigned char log_alignment, check_kind;
};
void __ubsan_handle_type_mismatch_v1_abort(void* data, void* pointer) {
  const SimTypeMismatch* d = static_cast<const SimTypeMismatch*>(data);
  sim::Thread* t = sim::current();
  if (!pointer)
    sim::report("oob", t, {}, "null pointer used as %s at %s:%u:%u%s%s", d->type->name, d->loc.file, d->loc.line,
                d->loc.column, t ? " by " : "", t ? sim::where(t).c_str() : "");
  sim::report("oob", t, {}, "misaligned access at address %p through a pointer to %s, which needs %u-byte alignment "
              "(a GPU faults), at %s:%u:%u%s%s", pointer, d->type->name, 1u << d->log_alignment, d->loc.file,
              d->loc.line, d->loc.column, t ? " by " : "", t ? sim::where(t).c_str() : "");
}
void __ubsan_handle_type_mismatch_v1(void* data, void* pointer) { __ubsan_handle_type_mismatch_v1_abort(data, pointer); }

// A failed device assert (this executable's definition is the one every call binds to).
void __assert_fail(const char* expr, const char* file, unsigned int line, const char* function) noexcept {
  sim::Thread* t = sim::current();
  sim::report("assert", t, {}, "assertion `%s` failed at %s:%u in %s%s%s", expr, file, line, function,
              t ? ", " : "", t ? sim::where(t).c_str() : "");
}
}  // extern "C"

// ---- what the kernel-facing header calls ----------------------------------------------------------
namespace sim {
uint3 thread_idx() { return current()->tid; }
uint3 block_idx() { return current()->block->bid; }
dim3 block_dim() { return current()->block->launch->block; }
dim3 grid_dim() { return current()->block->launch->grid; }
int lane_id() { return (int)(current()->linear % 32); }
void* dynamic_shared() { return current()->block->slot->dyn; }

int barrier(long site, int kind, int value) {
  Thread* t = current();
  t->state = AT_BARRIER;
  t->site = site;
  t->kind = kind;
  t->bar_value = value;
  yield_to_scheduler(t);
  return (int)t->result;
}

unsigned long long warp_op(long site, int kind, unsigned mask, unsigned long long value, int lane_arg, int width) {
  Thread* t = current();
  unsigned lane = t->linear % 32;
  if (kind != W_ACTIVEMASK && !(mask >> lane & 1u))
    report("barrier", t, {reinterpret_cast<uintptr_t>(__builtin_return_address(0))},
           "%s at {pc0}: lane %u of %s calls it with mask 0x%08x, which does not name the lane itself",
           warp_name(kind), lane, where(t).c_str(), mask);
  if (width < 1 || width > 32 || (width & (width - 1)))
    report("barrier", t, {reinterpret_cast<uintptr_t>(__builtin_return_address(0))},
           "%s at {pc0}: width %d is not a power of two from 1 to 32", warp_name(kind), width);
  t->state = AT_WARP;
  t->site = site;
  t->kind = kind;
  t->mask = mask;
  t->value = value;
  t->lane_arg = lane_arg;
  t->width = width;
  t->xbytes = 0;
  yield_to_scheduler(t);
  return t->result;
}

void warp_exchange(long site, int kind, unsigned mask, const void* mine, int bytes, void* all) {
  Thread* t = current();
  unsigned lane = t->linear % 32;
  if (!(mask >> lane & 1u))
    report("barrier", t, {reinterpret_cast<uintptr_t>(__builtin_return_address(0))},
           "%s at {pc0}: lane %u of %s calls it with mask 0x%08x, which does not name the lane itself",
           warp_name(kind), lane, where(t).c_str(), mask);
  t->state = AT_WARP;
  t->site = site;
  t->kind = kind;
  t->mask = mask;
  t->value = 0;
  t->xsrc = mine;
  t->xdst = all;
  t->xbytes = bytes;
  yield_to_scheduler(t);
}

static uint8_t* pending_map(Slot& s, const Launch& L, uintptr_t addr, unsigned size) {
  if (addr >= s.tls_lo && addr + size <= s.tls_hi && in_pairs(L.shared, s.tls_lo, addr, size))
    return &s.pend_tls[addr - s.tls_lo];
  uintptr_t dyn = reinterpret_cast<uintptr_t>(s.dyn);
  if (dyn && addr >= dyn && addr + size <= dyn + L.dyn_bytes) return &s.pend_dyn[addr - dyn];
  return nullptr;
}

void cp_async(void* dst, const void* src, int bytes, int src_bytes) {
  Thread* t = current();
  uintptr_t pc = reinterpret_cast<uintptr_t>(__builtin_return_address(0));
  uintptr_t d = reinterpret_cast<uintptr_t>(dst), a = reinterpret_cast<uintptr_t>(src);
  if (bytes != 4 && bytes != 8 && bytes != 16)
    report("oob", t, {pc}, "cp.async of %d bytes by %s at {pc0}: the copy size is 4, 8 or 16", bytes, where(t).c_str());
  if (src_bytes < 0 || src_bytes > bytes)
    report("oob", t, {pc}, "cp.async by %s at {pc0}: source size %d outside [0, %d]", where(t).c_str(), src_bytes,
           bytes);
  if (d % bytes || a % bytes)
    report("oob", t, {pc}, "misaligned cp.async of %d bytes (destination %#lx, source %#lx; both must be aligned "
           "to the copy size) by %s at {pc0}", bytes, (unsigned long)d, (unsigned long)a, where(t).c_str());
  Slot& s = *t->block->slot;
  uint8_t* map = pending_map(s, *t->block->launch, d, bytes);
  if (!map)
    report("oob", t, {pc}, "cp.async destination %#lx (%d bytes) is not inside a __shared__ variable or the "
           "launch's dynamic shared memory, by %s at {pc0}", (unsigned long)d, bytes, where(t).c_str());
  Thread::Copy c;
  c.dst = d;
  c.pc = pc;
  c.bytes = bytes;
  c.group = t->groups;
  std::memset(c.data, 0, sizeof c.data);
  if (src_bytes > 0) {  // the source is read now (checked as this thread's read)
    access(a, (unsigned)src_bytes, false, false, pc, false);
    std::memcpy(c.data, src, (size_t)src_bytes);
  }
  // The copy writes its destination at some time between issue and wait: recorded
  // as this thread's write now (an unordered earlier read by another thread is a
  // race) and again at completion; a copy into bytes another copy has yet to
  // write is reported here too (check_pending, as a write).
  access(d, (unsigned)bytes, true, false, pc, true);
  for (int i = 0; i < bytes; ++i) map[i] += 1;
  s.pending += 1;
  t->copies.push_back(c);
}

void cp_async_commit() { current()->groups += 1; }

bool is_shared(const void* p, int bytes) {
  Thread* t = current();
  return pending_map(*t->block->slot, *t->block->launch, reinterpret_cast<uintptr_t>(p), (unsigned)bytes) != nullptr;
}

// Complete this thread's copies of groups older than `below` (the destination
// is written now, as this thread's write, for the race detector).
static void complete_copies(Thread* t, unsigned below) {
  if (t->copies.empty()) return;
  Slot& s = *t->block->slot;
  std::vector<Thread::Copy> keep;
  for (const Thread::Copy& c : t->copies) {
    if (below != ~0u && c.group >= below) { keep.push_back(c); continue; }
    uint8_t* map = pending_map(s, *t->block->launch, c.dst, c.bytes);
    for (int i = 0; i < c.bytes; ++i) map[i] -= 1;
    s.pending -= 1;
    access(c.dst, (unsigned)c.bytes, true, false, c.pc, true);
    std::memcpy(reinterpret_cast<void*>(c.dst), c.data, (size_t)c.bytes);
  }
  t->copies.swap(keep);
}

void cp_async_wait(int pending) {
  Thread* t = current();
  unsigned n = pending < 0 ? 0u : (unsigned)pending;
  complete_copies(t, t->groups > n ? t->groups - n : 0u);
}

[[noreturn]] void trap(const char* what, const char* file, int line) {
  Thread* t = current();
  report("assert", t, {}, "%s at %s:%d%s%s", what, file, line, t ? " in " : "", t ? where(t).c_str() : "");
}
}  // namespace sim

// ---- main: the worker loop ----------------------------------------------------------------------
static bool read_exact(char* p, size_t n) {
  while (n) {
    ssize_t k = recv(sim::g_sock, p, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= (size_t)k;
  }
  return true;
}

int main() {
  using namespace sim;
  const char* fd_text = std::getenv("CONVOPS_SIM_FD");
  if (!fd_text) {
    std::fprintf(stderr, "convops sim worker: run by convops.sim (CONVOPS_SIM_FD is not set)\n");
    return 2;
  }
  g_sock = std::atoi(fd_text);
  // end with the caller, even in the middle of a launch (PR_SET_PDEATHSIG would follow the caller's
  // *thread* that started this process, which may end long before the caller)
  pid_t parent = getppid();
  std::thread([parent]() {
    while (getppid() == parent) usleep(200000);
    _exit(0);
  }).detach();
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // kernel printf reaches a pipe before the worker ends
  const char* stack_text = std::getenv("CONVOPS_SIM_STACK_BYTES");
  if (stack_text && std::atol(stack_text) > 0) g_stack_bytes = (size_t)std::atol(stack_text);
  g_stack_bytes = (g_stack_bytes + kPage - 1) & ~(kPage - 1);
  g_region_size = 1;
  while (g_region_size < g_stack_bytes + kPage + (32 << 10)) g_region_size <<= 1;
  g_region_mask = ~(uintptr_t)(g_region_size - 1);
  // one reservation for every fiber stack of every slot, aligned to the region size
  size_t total = (size_t)kMaxSlots * kMaxThreads * g_region_size;
  char* raw = static_cast<char*>(mmap(nullptr, total + g_region_size, PROT_NONE,
                                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  if (raw == MAP_FAILED) { std::perror("convops sim worker: reserve stacks"); return 3; }
  g_fib_lo = (reinterpret_cast<uintptr_t>(raw) + g_region_size - 1) & g_region_mask;
  g_fib_size = total;
  for (int s = 0; s < kMaxSlots; ++s) g_slots[s].index = s;
  dl_iterate_phdr([](dl_phdr_info* info, size_t, void*) -> int {
    for (int i = 0; i < info->dlpi_phnum; ++i)
      if (info->dlpi_phdr[i].p_type == PT_LOAD) {
        uintptr_t lo = info->dlpi_addr + info->dlpi_phdr[i].p_vaddr, hi = lo + info->dlpi_phdr[i].p_memsz;
        g_static.push_back({lo, hi});
        if (info->dlpi_phdr[i].p_flags & PF_X) { g_text_lo = lo; g_text_hi = hi; }
      }
    return 1;
  }, nullptr);
  install_handlers();
  alt_stack_for_thread();
  static uint64_t no_control[1 + 3 * kMaxSlots];
  g_control = no_control;  // until an arena arrives
  hello();
  std::vector<char> buf;
  while (true) {
    uint64_t n = 0;
    char cbuf[CMSG_SPACE(sizeof(int))];
    iovec iov{&n, sizeof n};
    msghdr m;
    std::memset(&m, 0, sizeof m);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
    ssize_t got = recvmsg(g_sock, &m, MSG_WAITALL);
    if (got != (ssize_t)sizeof n) return 0;  // the caller is gone
    int fd = -1;
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
    buf.resize(std::max<uint64_t>(n, sizeof(ReqHeader)));
    if (!read_exact(buf.data(), n)) return 0;
    ReqHeader h;
    std::memcpy(&h, buf.data(), sizeof h);
    if (n < sizeof h || h.magic != kMagic || h.kernel >= (uint64_t)convops_sim_kernel_count) {
      send_message("{\"ok\": false, \"kind\": \"launch\", \"message\": \"malformed launch request\"}");
      return 4;
    }
    if (fd >= 0) map_arena(fd, h.arena_len);
    launch(buf.data());
  }
}

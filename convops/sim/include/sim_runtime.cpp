// sim_runtime.cpp -- the simulator's runtime: a launch worker process that
// runs CUDA kernels (compiled against cuda_sim.h with GCC's thread-sanitizer
// instrumentation) and checks what a GPU would not tell you.
//
// Process: the Python side (convops/sim/module.py) starts this executable
// with a Unix socket (fd in CONVOPS_SIM_FD) and sends one launch request at a
// time; the kernel's buffers live in a shared memory arena whose fd comes
// with the request.  Every error in a kernel -- an out-of-bounds or wild
// access, a race, barrier divergence, division by zero, a failed assert, a
// stack overflow, a crash -- is reported on the socket, after which the
// worker exits; the caller's process never sees the fault.
//
// Execution: a block runs on one OS thread, its threads as cooperative
// fibers (hand-written x86-64 context switch).  __syncthreads and warp
// operations suspend a fiber until the threads they wait for arrive; thread
// order inside each barrier interval is forward or reversed (the request's
// `order`), so an order dependence shows up as a difference between runs.
//
// Checks on every access (the __tsan_* hooks below; not ThreadSanitizer):
// - bounds: an access must lie inside one argument buffer, the block's
//   shared memory (static: this executable's TLS block; dynamic: a buffer
//   sized by the launch), the thread's own stack or this executable's data;
//   anything else is reported with the argument it is nearest to.
// - races (when the request asks): each byte of shared memory and each
//   element of an argument keeps its last write and two last reads (block,
//   thread, barrier epoch, warp clock, source address).  Two accesses by
//   different threads conflict when at least one writes and not both are
//   atomic; they are ordered only by program order, a __syncthreads between
//   them (same block, earlier epoch) or a warp operation both lanes took part
//   in (vector clocks over the warp's lanes).  Blocks are never ordered with
//   each other.  Race runs use one OS thread, so the shadow needs no locks.
//
// Stacks: each fiber's stack sits in a region of size 2^k aligned to 2^k,
// [header page | guard (no access) | stack]; the header holds the fiber's
// Thread*, so the current thread is found from the stack pointer alone.
// Kernel code is compiled with -fstack-clash-protection, so a frame larger
// than the stack touches the guard: SIGSEGV, reported as a stack overflow.
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <link.h>
#include <mutex>
#include <string>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <thread>
#include <ucontext.h>
#include <unistd.h>
#include <vector>

#include "sim_abi.h"

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
  uint16_t thread, flags;  // flags: 1 valid, 2 write, 4 atomic
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
};

struct Region {  // an argument buffer as the kernel sees it
  uintptr_t lo = 0, hi = 0;
  int arg = 0;             // first argument that points into it
  unsigned granule = 1;    // race-detector cell size (the element size)
  Cell* shadow = nullptr;
  void* map = nullptr;     // reservation [gap | data | gap]
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
  std::vector<Region> regions;
  std::vector<std::pair<uint64_t, uint64_t>> shared;  // (offset, size) of its static shared variables
  std::atomic<unsigned long> next{0};
};

struct Slot {  // what one OS thread running blocks owns
  int index = 0;
  char* fibers = nullptr;  // kMaxThreads regions
  std::vector<char> dyn;   // dynamic shared memory (capacity)
  uintptr_t tls_lo = 0, tls_hi = 0;
  Cell* tls_shadow = nullptr;
  Cell* dyn_shadow = nullptr;
  size_t dyn_shadow_cells = 0;
  bool started = false;
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
static size_t g_tls_size = 0, g_tls_align = 1;
static volatile uint64_t* g_control = nullptr;  // progress and position, read by the watchdog
static size_t g_arena_len = 0;
static char* g_arena = nullptr;
static int g_arena_fd = -1;

static inline Thread* current() {
  uintptr_t sp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  if (sp - g_fib_lo >= g_fib_size) return nullptr;
  return *reinterpret_cast<Thread**>(sp & g_region_mask);
}

static inline Thread* fiber_at(uintptr_t sp) {
  if (sp - g_fib_lo >= g_fib_size) return nullptr;
  Thread* t = *reinterpret_cast<Thread**>(sp & g_region_mask);
  return t;
}

// ---- reports: one JSON line on the socket, then the worker exits ------------------------
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

static void send_all(const std::string& s) {
  ssize_t n = send(g_sock, s.data(), s.size(), MSG_NOSIGNAL);
  (void)n;
}

// kind: the SimError subclass the Python side raises; message may name {pc0}, {pc1}: source
// positions the Python side resolves with addr2line.
[[noreturn]] static void report(const char* kind, const Thread* t, std::vector<uintptr_t> pcs, const char* fmt, ...) {
  std::lock_guard<std::mutex> guard(g_report_lock);
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
  send_all(out);
  _exit(0);
}

static std::string where(const Thread* t) {
  char b[128];
  std::snprintf(b, sizeof b, "thread (%u,%u,%u) of block (%u,%u,%u)", t->tid.x, t->tid.y, t->tid.z,
                t->block->bid.x, t->block->bid.y, t->block->bid.z);
  return b;
}

// ---- the fiber scheduler ------------------------------------------------------------------
static inline void yield_to_scheduler(Thread* t) { convops_sim_switch(&t->sp, t->block->scheduler_sp); }

extern "C" void convops_sim_fiber_entry() {
  Thread* t = current();
  t->block->launch->kernel->invoke(t->block->launch->args);
  t->state = DONE;
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
}

static const char* warp_name(int kind) {
  static const char* names[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
                                "__ballot_sync", "__any_sync", "__all_sync", "__syncwarp", "__activemask"};
  return kind >= 0 && kind <= W_ACTIVEMASK ? names[kind] : "?";
}

static void fail_block(Block& b, const Thread* t, const char* fmt, ...) {
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

// Release the warp operations that can complete in warp [w0, end): a lane
// waiting with mask M completes when every non-exited lane named in M waits at
// the same operation with the same mask.  Returns true if any completed.
static bool release_warps(Block& b, unsigned n) {
  bool any = false;
  for (unsigned w0 = 0; w0 < n; w0 += 32) {
    unsigned end = std::min(n, w0 + 32);
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
        unsigned lanes = t.mask & ~exited & ((end - w0 == 32) ? 0xffffffffu : ((1u << (end - w0)) - 1));
        bool complete = true;
        for (unsigned j = 0; j < 32 && complete; ++j) {
          if (!(lanes >> j & 1u)) continue;
          Thread& u = b.threads[w0 + j];
          if (u.state != AT_WARP) { complete = false; break; }
          bool same = u.mask == t.mask && u.kind == t.kind && (t.kind == W_SYNC || u.site == t.site);
          if (!same)
            fail_block(b, &t, "warp divergence: in block (%u,%u,%u) warp %u, lane %u waits at %s (line %ld, mask "
                       "0x%08x) and lane %u at %s (line %ld, mask 0x%08x); every lane a mask names must reach the "
                       "same warp operation with the same mask", b.bid.x, b.bid.y, b.bid.z, w0 / 32, i - w0,
                       warp_name(t.kind), t.site & 0xFFFFF, t.mask, j, warp_name(u.kind), u.site & 0xFFFFF, u.mask);
        }
        if (!complete) continue;
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
            unsigned src = source_lane(u, j);
            if (src != j && !(group >> src & 1u))
              fail_block(b, &u, "%s in block (%u,%u,%u) warp %u: lane %u reads lane %u, which does not take part "
                         "(mask 0x%08x%s): the value is undefined on a GPU", warp_name(u.kind), b.bid.x, b.bid.y,
                         b.bid.z, w0 / 32, j, src, u.mask, (exited >> src & 1u) ? ", the lane has exited" : "");
            u.result = b.threads[w0 + src].value;
            break;
          }
          case W_BALLOT: u.result = ballot; break;
          case W_ANY: u.result = ballot != 0; break;
          case W_ALL: u.result = ballot == group; break;
          case W_ACTIVEMASK: u.result = group; break;
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
      fail_block(b, &t, "warp operation deadlock: in block (%u,%u,%u), lane %u of warp %u waits at %s (line %ld) "
                 "with mask 0x%08x, which names lane %u, but that lane waits at __syncthreads (line %ld) and "
                 "never arrives", b.bid.x, b.bid.y, b.bid.z, i - w0, w0 / 32, warp_name(t.kind), t.site & 0xFFFFF,
                 t.mask, j, u.site & 0xFFFFF);
    }
    fail_block(b, &t, "warp operation deadlock: in block (%u,%u,%u), lane %u of warp %u waits at %s (line %ld) "
               "with mask 0x%08x, which the other lanes never complete", b.bid.x, b.bid.y, b.bid.z, i - w0, w0 / 32,
               warp_name(t.kind), t.site & 0xFFFFF, t.mask);
  }
  fail_block(b, nullptr, "deadlock in block (%u,%u,%u)", b.bid.x, b.bid.y, b.bid.z);
}

static void note_progress(Slot& s, uint32_t block, unsigned thread) {
  if (!g_control) return;
  __atomic_fetch_add(&g_control[0], 1, __ATOMIC_RELAXED);
  g_control[1 + 2 * s.index] = block + 1;
  g_control[2 + 2 * s.index] = thread;
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
      note_progress(*b.slot, b.linear, i);
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
        fail_block(b, &t, "barrier divergence: block (%u,%u,%u) threads wait at different __syncthreads "
                   "(lines %ld and %ld)", b.bid.x, b.bid.y, b.bid.z, site & 0xFFFFF, t.site & 0xFFFFF);
      ++waiting;
      count += t.bar_value != 0;
      all_and &= t.bar_value != 0;
      any_or |= t.bar_value != 0;
    }
    if (waiting == 0) return;
    if (done > 0)
      fail_block(b, first, "barrier divergence: block (%u,%u,%u): %u threads wait at __syncthreads (line %ld) that "
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
static inline bool ordered(const Access& a, uint32_t block, uint16_t thread, uint32_t epoch, const Thread* t) {
  if (a.block != block) return false;
  if (a.thread == thread) return true;
  if (a.epoch < epoch) return true;
  return (a.thread >> 5) == (thread >> 5) && a.clock <= t->vc[a.thread & 31];
}

static void describe(char* out, size_t len, const Access& a) {
  unsigned n = g_launch->block.x * g_launch->block.y * g_launch->block.z;
  (void)n;
  unsigned bx = g_launch->grid.x, by = g_launch->grid.y;
  unsigned tx = g_launch->block.x, ty = g_launch->block.y;
  std::snprintf(out, len, "%s by thread (%u,%u,%u) of block (%u,%u,%u)",
                (a.flags & 4) ? "an atomic access" : (a.flags & 2) ? "a write" : "a read",
                a.thread % tx, (a.thread / tx) % ty, a.thread / (tx * ty), a.block % bx, (a.block / bx) % by,
                a.block / (bx * by));
}

[[noreturn]] static void race(const Thread* t, const Access& now, const Access& before, const char* where_text) {
  char a[160], b[160];
  describe(a, sizeof a, now);
  describe(b, sizeof b, before);
  report("race", t, {now.pc, before.pc}, "data race on %s: %s at {pc0} conflicts with %s at {pc1}, with no "
         "__syncthreads or warp synchronization between them%s", where_text, a, b,
         now.block != before.block ? " (different blocks are never ordered)" : "");
}

static void shadow_access(Cell* cells, size_t index, bool shared, const Thread* t, bool write, bool atomic,
                          uintptr_t pc, const char* (*name)(char*, size_t, const void*), const void* ctx) {
  Cell& c = cells[index];
  Access now;
  now.block = t->block->linear;
  now.epoch = t->block->epoch;
  now.thread = (uint16_t)t->linear;
  now.clock = t->vc[t->linear & 31];
  now.pc = (uint32_t)pc;
  now.flags = 1 | (write ? 2 : 0) | (atomic ? 4 : 0);
  auto live = [&](const Access& a) { return (a.flags & 1) && !(shared && a.block != now.block); };
  auto conflicts = [&](const Access& a) {
    if (!live(a) || (a.block == now.block && a.thread == now.thread)) return false;
    if ((a.flags & 4) && atomic) return false;
    return !ordered(a, now.block, now.thread, now.epoch, t);
  };
  char text[256];
  if (conflicts(c.w)) race(t, now, c.w, name(text, sizeof text, ctx));
  if (write) {
    if (conflicts(c.r0)) race(t, now, c.r0, name(text, sizeof text, ctx));
    if (conflicts(c.r1)) race(t, now, c.r1, name(text, sizeof text, ctx));
    c.w = now;
    c.r0.flags = c.r1.flags = 0;
  } else {
    if (live(c.r0) && c.r0.block == now.block && c.r0.thread == now.thread) c.r0 = now;
    else if (live(c.r1) && c.r1.block == now.block && c.r1.thread == now.thread) c.r1 = now;
    else { c.r1 = c.r0; c.r0 = now; }
    if (!live(c.r1)) c.r1.flags = 0;
  }
}

struct ArgCtx { const Region* r; uintptr_t addr; };
static const char* arg_name(char* out, size_t len, const void* p) {
  const ArgCtx* c = static_cast<const ArgCtx*>(p);
  std::snprintf(out, len, "argument %d at byte offset %lu", c->r->arg, (unsigned long)(c->addr - c->r->lo));
  return out;
}
struct SharedCtx { const char* what; uintptr_t off; };
static const char* shared_name(char* out, size_t len, const void* p) {
  const SharedCtx* c = static_cast<const SharedCtx*>(p);
  std::snprintf(out, len, "%s shared memory at byte offset %lu", c->what, (unsigned long)c->off);
  return out;
}

[[noreturn]] static void bad_address(const Thread* t, uintptr_t addr, unsigned size, bool write, uintptr_t pc) {
  const char* rw = write ? "write" : "read";
  const Launch& L = *t->block->launch;
  const Slot& s = *t->block->slot;
  if (addr < kPage)
    report("oob", t, {pc}, "invalid %s of %u bytes at address %#lx (a null pointer) by %s at {pc0}", rw, size,
           (unsigned long)addr, where(t).c_str());
  if (addr >= s.tls_lo && addr < s.tls_hi)
    report("oob", t, {pc}, "out-of-bounds %s of %u bytes at byte offset %lu of static shared memory, outside "
           "every __shared__ variable of the kernel, by %s at {pc0}", rw, size, (unsigned long)(addr - s.tls_lo),
           where(t).c_str());
  uintptr_t dyn = reinterpret_cast<uintptr_t>(s.dyn.data());
  if (addr >= dyn && addr < dyn + L.dyn_bytes + 4096)
    report("oob", t, {pc}, "out-of-bounds %s of %u bytes at byte offset %lu of dynamic shared memory (%lu bytes "
           "launched) by %s at {pc0}", rw, size, (unsigned long)(addr - dyn), (unsigned long)L.dyn_bytes,
           where(t).c_str());
  if (addr - g_fib_lo < g_fib_size)
    report("oob", t, {pc}, "%s of %u bytes at %#lx in another thread's local memory (stack) by %s at {pc0}", rw,
           size, (unsigned long)addr, where(t).c_str());
  const Region* near = nullptr;
  long best = 0;
  for (const Region& r : L.regions) {
    long d = addr < r.lo ? (long)(r.lo - addr) : (long)(addr + size - r.hi);
    if (!near || d < best) { near = &r; best = d; }
  }
  if (near && best <= (1L << 40)) {
    long off = (long)(addr - near->lo);
    report("oob", t, {pc}, "out-of-bounds %s of %u bytes to argument %d (%lu bytes) %s, at byte offset %ld, by %s "
           "at {pc0}", rw, size, near->arg, (unsigned long)(near->hi - near->lo),
           off < 0 ? "before the start" : "past the end", off, where(t).c_str());
  }
  report("oob", t, {pc}, "invalid %s of %u bytes at address %#lx (not inside any argument, shared memory or the "
         "thread's stack) by %s at {pc0}", rw, size, (unsigned long)addr, where(t).c_str());
}

static void access(uintptr_t addr, unsigned size, bool write, bool atomic, uintptr_t pc, bool aligned) {
  Thread* t = current();
  if (!t) return;
  if (addr - t->stack_lo < t->stack_hi - t->stack_lo) return;  // the thread's own locals
  Launch& L = *t->block->launch;
  if (aligned && size > 1 && (addr & (size - 1)))
    report("oob", t, {pc}, "misaligned %s of %u bytes at address %#lx (a GPU faults: accesses must be aligned to "
           "their size) by %s at {pc0}", write ? "write" : "read", size, (unsigned long)addr, where(t).c_str());
  for (Region& r : L.regions) {
    if (addr >= r.lo && addr < r.hi) {
      if (addr + size > r.hi) bad_address(t, addr, size, write, pc);
      if (L.race) {
        ArgCtx ctx{&r, addr};
        size_t first = (addr - r.lo) / r.granule, last = (addr + size - 1 - r.lo) / r.granule;
        for (size_t i = first; i <= last; ++i) shadow_access(r.shadow, i, false, t, write, atomic, pc, arg_name, &ctx);
      }
      return;
    }
  }
  Slot& s = *t->block->slot;
  if (addr >= s.tls_lo && addr + size <= s.tls_hi) {
    bool declared = false;  // inside one of the kernel's own static shared variables
    for (auto& v : L.shared)
      declared |= addr >= s.tls_lo + v.first && addr + size <= s.tls_lo + v.first + v.second;
    if (!declared) bad_address(t, addr, size, write, pc);
    if (L.race) {
      SharedCtx ctx{"static", addr - s.tls_lo};
      for (unsigned i = 0; i < size; ++i)
        shadow_access(s.tls_shadow, addr - s.tls_lo + i, true, t, write, atomic, pc, shared_name, &ctx);
    }
    return;
  }
  uintptr_t dyn = reinterpret_cast<uintptr_t>(s.dyn.data());
  if (addr >= dyn && addr + size <= dyn + L.dyn_bytes) {
    if (L.race) {
      SharedCtx ctx{"dynamic", addr - dyn};
      for (unsigned i = 0; i < size; ++i)
        shadow_access(s.dyn_shadow, addr - dyn + i, true, t, write, atomic, pc, shared_name, &ctx);
    }
    return;
  }
  for (auto& seg : g_static)
    if (addr >= seg.first && addr + size <= seg.second) return;
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
  if (L.dyn_bytes) std::memset(s.dyn.data(), 0xFF, L.dyn_bytes);
}

static void run_blocks(Launch& L, Slot& s) {
  setup_slot(s);
  alt_stack_for_thread();
  tls_range(s);
  if (s.dyn.size() < L.dyn_bytes + 16) s.dyn.assign(L.dyn_bytes + 16, 0);
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
  delete[] threads;
}

// ---- protocol -------------------------------------------------------------------------------
// Request (little endian): header, then n_regions Region records, n_shared (offset, size, 0, 0)
// records (the kernel's static shared variables in the TLS block), n_args Arg records, then the
// scalar bytes.  Every field is 8 bytes.
struct ReqHeader {
  uint64_t magic, kernel, grid[3], block[3], dyn_bytes, order, race, threads, n_args, n_regions, n_shared, arena_len;
};
struct ReqRegion {
  uint64_t offset, nbytes, granule, arg;
};
struct ReqArg {
  uint64_t is_pointer, region, offset, size;  // pointer: region and offset in it; scalar: offset in the blob, size
};
constexpr uint64_t kMagic = 0x636f6e766f707331ull;  // "convops1"
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

static void launch(const char* msg, size_t len) {
  ReqHeader h;
  std::memcpy(&h, msg, sizeof h);
  const ReqRegion* rr = reinterpret_cast<const ReqRegion*>(msg + sizeof h);
  const ReqRegion* rs = rr + h.n_regions;
  const ReqArg* ra = reinterpret_cast<const ReqArg*>(rs + h.n_shared);
  const char* blob = reinterpret_cast<const char*>(ra + h.n_args);
  (void)len;
  Launch L;
  L.kernel = &convops_sim_kernels[h.kernel];
  L.grid = dim3(h.grid[0], h.grid[1], h.grid[2]);
  L.block = dim3(h.block[0], h.block[1], h.block[2]);
  L.nthreads = L.block.x * L.block.y * L.block.z;
  L.dyn_bytes = h.dyn_bytes;
  L.order = (int)h.order;
  L.race = h.race != 0;
  for (uint64_t i = 0; i < h.n_shared; ++i) L.shared.push_back({rs[i].offset, rs[i].nbytes});
  g_launch = &L;
  // argument buffers: each mapped on its own, between unmapped gaps
  for (uint64_t i = 0; i < h.n_regions; ++i) {
    Region r;
    size_t data = (rr[i].nbytes + kPage - 1) & ~(kPage - 1);
    r.map_len = data + 2 * kGap;
    r.map = mmap(nullptr, r.map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    char* base = static_cast<char*>(r.map) + kGap;
    if (data) {  // the arena's pages again, at an address with nothing mapped around it
      void* got = mmap(base, data, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, g_arena_fd, rr[i].offset);
      if (got == MAP_FAILED) { std::perror("convops sim worker: map argument"); _exit(3); }
    }
    r.lo = reinterpret_cast<uintptr_t>(base);
    r.hi = r.lo + rr[i].nbytes;
    r.arg = (int)rr[i].arg;
    r.granule = (unsigned)std::max<uint64_t>(1, rr[i].granule);
    if (L.race) r.shadow = static_cast<Cell*>(std::calloc((rr[i].nbytes + r.granule - 1) / r.granule + 1, sizeof(Cell)));
    L.regions.push_back(r);
  }
  std::vector<void*> args(h.n_args);
  std::vector<uintptr_t> pointers(h.n_args);
  for (uint64_t i = 0; i < h.n_args; ++i) {
    if (ra[i].is_pointer) {
      pointers[i] = L.regions[ra[i].region].lo + ra[i].offset;
      args[i] = &pointers[i];
    } else {
      args[i] = const_cast<char*>(blob + ra[i].offset);
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
    s.tls_shadow = static_cast<Cell*>(std::calloc(s.tls_hi - s.tls_lo + 1, sizeof(Cell)));
    s.dyn_shadow = static_cast<Cell*>(std::calloc(L.dyn_bytes + 1, sizeof(Cell)));
  }
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < workers; ++i) pool.emplace_back([&L, i]() { run_blocks(L, g_slots[i]); });
  run_blocks(L, g_slots[0]);
  for (auto& t : pool) t.join();
  for (Region& r : L.regions) {
    munmap(r.map, r.map_len);
    std::free(r.shadow);
  }
  if (L.race) {
    std::free(g_slots[0].tls_shadow);
    std::free(g_slots[0].dyn_shadow);
    g_slots[0].tls_shadow = g_slots[0].dyn_shadow = nullptr;
  }
  g_launch = nullptr;
  send_all("{\"ok\": true}");
}

// The handshake: the static shared memory size and every kernel's signature.
static void hello() {
  Slot probe;
  tls_range(probe);
  g_tls_size = probe.tls_hi - probe.tls_lo;
  std::string out = "{\"ok\": true, \"static_shared\": " + std::to_string(g_tls_size) + ", \"kernels\": [";
  for (int k = 0; k < convops_sim_kernel_count; ++k) {
    ParamInfo info[64];
    int n = convops_sim_kernels[k].signature(info, 64);
    out += k ? ", [" : "[";
    for (int i = 0; i < n && i < 64; ++i) {
      char b[96];
      std::snprintf(b, sizeof b, "%s{\"size\": %ld, \"pointer\": %d, \"pointee\": %ld, \"kind\": \"%c\", \"elem\": %d, "
                    "\"type\": ", i ? ", " : "", info[i].size, info[i].is_pointer, info[i].pointee_size,
                    info[i].kind, info[i].elem_size);
      out += b;
      json_str(out, info[i].type);
      out += "}";
    }
    out += "]";
  }
  out += "]}";
  send_all(out);
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
    report("stack", t, {pc}, "stack overflow: %s used more than its %lu-byte stack (config.sim_stack_bytes) at "
           "{pc0}", where(t).c_str(), (unsigned long)g_stack_bytes);
  if (t && sig == SIGFPE)
    report("fault", t, {pc}, "arithmetic fault (%s: integer division by zero or overflow) in %s at {pc0}", name,
           where(t).c_str());
  if (t && (sig == SIGSEGV || sig == SIGBUS))
    report("oob", t, {pc}, "invalid access at address %#lx (%s) by %s at {pc0}", (unsigned long)addr, name,
           where(t).c_str());
  if (t)
    report("fault", t, {pc}, "%s in %s at {pc0}", name, where(t).c_str());
  report("fault", nullptr, {pc}, "%s in the simulator outside a kernel thread at {pc0} (address %#lx)", name,
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
void* dynamic_shared() { return current()->block->slot->dyn.data(); }

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
  yield_to_scheduler(t);
  return t->result;
}

[[noreturn]] void trap(const char* what, const char* file, int line) {
  Thread* t = current();
  report("assert", t, {}, "%s at %s:%d%s%s", what, file, line, t ? " in " : "", t ? where(t).c_str() : "");
}
}  // namespace sim

// ---- main: the worker loop ----------------------------------------------------------------------
int main() {
  using namespace sim;
  const char* fd_text = std::getenv("CONVOPS_SIM_FD");
  if (!fd_text) {
    std::fprintf(stderr, "convops sim worker: run by convops.sim (CONVOPS_SIM_FD is not set)\n");
    return 2;
  }
  g_sock = std::atoi(fd_text);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() == 1) return 0;
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
        uintptr_t lo = info->dlpi_addr + info->dlpi_phdr[i].p_vaddr;
        g_static.push_back({lo, lo + info->dlpi_phdr[i].p_memsz});
      }
    return 1;
  }, nullptr);
  install_handlers();
  alt_stack_for_thread();
  hello();
  std::vector<char> buf(1 << 20);
  while (true) {
    char cbuf[CMSG_SPACE(sizeof(int))];
    iovec iov{buf.data(), buf.size()};
    msghdr m;
    std::memset(&m, 0, sizeof m);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = cbuf;
    m.msg_controllen = sizeof cbuf;
    ssize_t n = recvmsg(g_sock, &m, 0);
    if (n <= 0) return 0;  // the caller is gone
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
        ReqHeader h;
        std::memcpy(&h, buf.data(), sizeof h);
        map_arena(fd, h.arena_len);
      }
    ReqHeader h;
    std::memcpy(&h, buf.data(), sizeof h);
    if (h.magic != kMagic || h.kernel >= (uint64_t)convops_sim_kernel_count) {
      send_all("{\"ok\": false, \"kind\": \"launch\", \"message\": \"malformed launch request\"}");
      return 4;
    }
    launch(buf.data(), (size_t)n);
  }
}

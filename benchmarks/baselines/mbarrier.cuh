// mbarrier and cp.async wrappers shared by the hand-written baselines (sm_90).
//
// Each is one PTX instruction (PTX ISA 8.x, "Parallel Synchronization and
// Communication Instructions: mbarrier" and "cp.async"); no CCCL dependency, so
// the baselines build with any nvcc that targets sm_90.
#pragma once

#include <cstdint>

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(count)
                 : "memory");
}

// arrive has .release.cta semantics by default: this thread's earlier shared-memory
// writes are visible to a thread whose wait observes the phase completing.
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
    asm volatile(
        "{ .reg .b64 state; mbarrier.arrive.shared::cta.b64 state, [%0]; }" ::"r"(smem_addr(bar))
        : "memory");
}

// try_wait suspends the thread for a hardware-chosen time when the phase is not yet
// complete, so this loop does not spin at full issue rate; it has .acquire.cta semantics.
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
    uint32_t done = 0;
    while (!done) {
        asm volatile(
            "{ .reg .pred p;\n"
            "  mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
            "  selp.u32 %0, 1, 0, p; }"
            : "=r"(done)
            : "r"(smem_addr(bar)), "r"(parity)
            : "memory");
    }
}

// 16 bytes global -> shared, bypassing L1 (.cg).
__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_addr(dst)), "l"(src)
                 : "memory");
}

// The barrier receives one arrival from this thread once all of its earlier cp.async
// copies have landed; .noinc: the barrier's expected count already includes it.
__device__ __forceinline__ void cp_async_arrive(uint64_t* bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(smem_addr(bar))
                 : "memory");
}

// Hand-written warp-specialised streaming pipelines, y = a*x + b: the baselines of
// benchmarks/pipeline.py.
//
// ws_mirror: the algorithm of asyncwarp's `stream` kernel written by hand. Blocks of
//   two warps; the producer warp loads BATCH floats per lane (plain loads) into one of
//   SLOTS slots of a shared ring and signals an mbarrier; the consumer warp waits,
//   reads the slot, frees it (a second mbarrier) and stores a*x + b.
// ws_cpasync: what a CUDA programmer would write for sm_80+: the producer warp fills
//   8 KiB stages with 16-byte cp.async copies that arrive on the stage's mbarrier when
//   they land; two consumer warps compute with float4 loads and stores.
//
// Both are persistent (grid-stride over chunks); grids are sized from occupancy.

#include <cstdint>

#include "mbarrier.cuh"

namespace {

constexpr int kWarp = 32;
constexpr int kMirrorBatch = 8;   // floats per lane per slot, as asyncwarp's BATCH
constexpr int kMirrorSlots = 2;   // as asyncwarp's STREAM_SLOTS
constexpr int kStageFloats = 2048;  // 8 KiB per cp.async stage
constexpr int kStages = 4;
constexpr int kConsumers = 2;

}  // namespace

extern "C" __global__ void __launch_bounds__(2 * kWarp)
    ws_mirror(float* __restrict__ y, const float* __restrict__ x, float a, float b, int n) {
    constexpr int chunk = kMirrorBatch * kWarp;
    __shared__ float ring[kMirrorSlots][chunk];
    __shared__ uint64_t full[kMirrorSlots], empty[kMirrorSlots];
    const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    if (threadIdx.x == 0) {
        for (int s = 0; s < kMirrorSlots; ++s) {
            mbar_init(&full[s], kWarp);   // every producer lane arrives
            mbar_init(&empty[s], kWarp);  // every consumer lane arrives
        }
    }
    __syncthreads();
    const int chunks = (n + chunk - 1) / chunk;
    int it = 0;
    if (warp == 0) {
        for (int c = blockIdx.x; c < chunks; c += gridDim.x, ++it) {
            const int s = it % kMirrorSlots;
            const int i = c * chunk + lane;
            float v[kMirrorBatch];  // loaded first: in flight while the warp waits for slot s
#pragma unroll
            for (int k = 0; k < kMirrorBatch; ++k) v[k] = x[min(i + k * kWarp, n - 1)];
            // Slot s was freed for the k-th time by phase k-1 of empty[s].
            if (it >= kMirrorSlots) mbar_wait(&empty[s], ((it / kMirrorSlots) & 1) ^ 1);
#pragma unroll
            for (int k = 0; k < kMirrorBatch; ++k) ring[s][k * kWarp + lane] = v[k];
            mbar_arrive(&full[s]);
        }
    } else {
        for (int c = blockIdx.x; c < chunks; c += gridDim.x, ++it) {
            const int s = it % kMirrorSlots;
            mbar_wait(&full[s], (it / kMirrorSlots) & 1);
            float v[kMirrorBatch];
#pragma unroll
            for (int k = 0; k < kMirrorBatch; ++k) v[k] = ring[s][k * kWarp + lane];
            mbar_arrive(&empty[s]);
            const int i = c * chunk + lane;
#pragma unroll
            for (int k = 0; k < kMirrorBatch; ++k)
                if (i + k * kWarp < n) y[i + k * kWarp] = a * v[k] + b;
        }
    }
}

// n must be a multiple of 4 (the host checks): every 16-byte vector is whole.
extern "C" __global__ void __launch_bounds__((1 + kConsumers) * kWarp)
    ws_cpasync(float* __restrict__ y, const float* __restrict__ x, float a, float b, int n) {
    __shared__ __align__(16) float ring[kStages][kStageFloats];
    __shared__ uint64_t full[kStages], empty[kStages];
    const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    if (threadIdx.x == 0) {
        for (int s = 0; s < kStages; ++s) {
            mbar_init(&full[s], kWarp);               // one cp.async arrival per producer lane
            mbar_init(&empty[s], kConsumers * kWarp);  // every consumer lane arrives
        }
    }
    __syncthreads();
    const int chunks = (n + kStageFloats - 1) / kStageFloats;
    int it = 0;
    if (warp == 0) {
        for (int c = blockIdx.x; c < chunks; c += gridDim.x, ++it) {
            const int s = it % kStages;
            if (it >= kStages) mbar_wait(&empty[s], ((it / kStages) & 1) ^ 1);
            const int base = c * kStageFloats;
#pragma unroll
            for (int e = lane * 4; e < kStageFloats; e += kWarp * 4)
                if (base + e < n) cp_async16(&ring[s][e], x + base + e);
            cp_async_arrive(&full[s]);
        }
        // Exit only once this thread's copies have landed (they write the ring the
        // consumers still read).
        asm volatile("cp.async.wait_all;" ::: "memory");
    } else {
        constexpr int part = kStageFloats / kConsumers;  // floats per consumer warp
        constexpr int vectors = part / (4 * kWarp);       // float4 per lane
        const int first = (warp - 1) * part;
        for (int c = blockIdx.x; c < chunks; c += gridDim.x, ++it) {
            const int s = it % kStages;
            mbar_wait(&full[s], (it / kStages) & 1);
            float4 v[vectors];
#pragma unroll
            for (int k = 0; k < vectors; ++k)
                v[k] = reinterpret_cast<const float4*>(&ring[s][first])[k * kWarp + lane];
            mbar_arrive(&empty[s]);
            const int base = c * kStageFloats + first;
#pragma unroll
            for (int k = 0; k < vectors; ++k) {
                const int e = base + 4 * (k * kWarp + lane);
                if (e < n) {
                    float4 r = v[k];
                    r.x = a * r.x + b;
                    r.y = a * r.y + b;
                    r.z = a * r.z + b;
                    r.w = a * r.w + b;
                    *reinterpret_cast<float4*>(y + e) = r;
                }
            }
        }
    }
}

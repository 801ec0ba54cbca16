// Hand-written ping-pong between two warps over mbarriers: the baseline of
// benchmarks/round_trip.py.
//
// The same protocol as asyncwarp's `ping_pong` kernel (two one-slot channels): the
// ping warp writes one value per lane into `to_pong` and arrives on `pong_ready`; the
// pong warp waits for that phase, adds one, writes `to_ping` and arrives on
// `ping_ready`, which the ping warp waits for. A slot is rewritten only after the
// other side's arrival proves it was read, so no "slot free" barriers are needed.

#include <cstdint>

#include "mbarrier.cuh"

extern "C" __global__ void __launch_bounds__(64) mbar_ping_pong(int* out, int rounds) {
    __shared__ int to_pong[32], to_ping[32];
    __shared__ uint64_t pong_ready, ping_ready;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (threadIdx.x == 0) {
        mbar_init(&pong_ready, 32);
        mbar_init(&ping_ready, 32);
    }
    __syncthreads();
    if (warp == 0) {
        int v = lane;
        for (int r = 0; r < rounds; ++r) {
            to_pong[lane] = v;
            mbar_arrive(&pong_ready);
            mbar_wait(&ping_ready, r & 1);
            v = to_ping[lane];
        }
        out[blockIdx.x * 32 + lane] = v;
    } else {
        for (int r = 0; r < rounds; ++r) {
            mbar_wait(&pong_ready, r & 1);
            to_ping[lane] = to_pong[lane] + 1;
            mbar_arrive(&ping_ready);
        }
    }
}

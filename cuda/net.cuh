// net.cuh: the device state as the kernels that read it take it: one struct passed by value
// (`const Net n`, the kernel's first parameter), its members the state's buffers by the names of
// their fields in genlab/engines/cuda/records.py. The host fills it by member name
// (runtime.by_name: a launch's given arguments first, then DeviceState.by_name); a member the
// kernel reads (`n.<member>` in its body) that is neither is an error naming it, the others are
// left null. Its NumPy layout is parsed from here: nothing is written twice. What varies launch
// by launch (task lists, batch, ld, split-K scratch) stays a parameter of its own.
//
// wide.cu's, conv.cu's, attention.cu's kernels and dataflow_step take the same buffers as
// `__restrict__` parameters of their own instead (launched by name all the same): nvcc compiles
// read-only loads (ld.global.nc) and moves loads past stores only for restrict kernel parameters,
// never for pointers read from a struct (nor copied into restrict locals, nor from a
// __grid_constant__ one), and on an H100 those kernels ran 1-5% slower from this struct
// (benchmarks/NOTES.md, "Architecture v2, eighth round").
#pragma once

struct Net {
    // the topology (Groups, Csr): read only
    const int *width, *act_off, *bias_off, *col_off, *hidden, *group_id;
    const int *in_ptr, *in_src, *in_dst, *in_woff, *out_ptr, *out_dst, *out_woff;
    // the parameters and the step's values (Parameters, Rows, StepSums, Ranges)
    float *params, *grads, *act, *dz;
    double *stats, *wstats, *scalars;
    float *range_min, *range_max, *run_lo, *run_hi;
    // growth's scores and its choice's scratch (Scores, GrowthScratch)
    double *ema, *taylor, *population;
    int *seen, *taylor_seen, *eligible, *marked, *keep, *rank, *constant;
};

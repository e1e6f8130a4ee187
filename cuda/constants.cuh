// constants.cuh: GENERATED from genlab/engines/cuda/constants.py (and the enums it names) by
// `python -m genlab.engines.cuda.constants`; do not edit (a test compares the two).
#pragma once

#define THREADS 256
#define TILE 32
#define HALF 16
#define MT 64
#define WT 128
#define CH 16
#define EW 4
#define CHUNK 4096
#define OP_INTS 7
#define GEO_INTS 9
#define ATT_SHARED 8192
#define CONV_CH 8
#define CONV_POS 4
#define CONV_WG 4
#define CONV_SAMPLES 16
#define CONV_SHARED 8192
#define GEO_KIND 0
#define GEO_C 1
#define GEO_H 2
#define GEO_W 3
#define GEO_K 4
#define GEO_STRIDE 5
#define GEO_HEADS 6
#define GEO_TOKENS 7
#define GEO_POSITIONS 8
#define KIND_DENSE 0
#define KIND_CONV 1
#define KIND_ATTENTION 2
#define GRAD_LIMIT_SQ 1e+36
#define OP_COPY 0
#define OP_IDENTITY 1
#define OP_SPLIT 2
#define OP_HE_UNIFORM 3
#define OP_ZERO_STATE 4
#define OP_ZERO 5
#define CRITERION_GRAD_STD 0
#define CRITERION_WEIGHT_GRAD_NORM 1
#define CRITERION_TAYLOR 2
#define FOLD_RANGE 0
#define FOLD_RELU_BIAS 1
#define OPTIMIZER_SGD 0
#define OPTIMIZER_ADAM 1

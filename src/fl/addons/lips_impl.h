/* What LIPS's two files share (lips.c: setup, the clients' sparse starts,
 * the add-on; lips_inertia.c: the inertia record). Not for other modules. */
#ifndef FH_LIPS_IMPL_H
#define FH_LIPS_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "fl/accumulate.h"
#include "fl/run.h"

struct fh_lips {
  int enabled, local, inertia, score, every, T;
  double d0;
  /* recorded layers: the weight of every conv and linear layer */
  int nl;
  int *view;        /* [nl] trainable view index                         */
  uint8_t *middle;  /* [nl] LIPS sparsifies it                           */
  size_t *goff;     /* [nl] offset in lips.grad, SIZE_MAX: not stored    */
  size_t glen;
  int f_grad;       /* -1: none                                          */
  /* client-local segments of the model state (payload offsets) */
  int nseg;
  size_t *seg_off, *seg_len;
  size_t nloc;
  int f_local;
  /* scratch */
  float *last_grad; /* [nparams]                                         */
  uint32_t *key;    /* [max_numel]                                       */
  uint8_t *keep;    /* [max_numel]                                       */
  uint32_t hist[2048];
  float *gdec;      /* [glen]                                            */
  /* inertia */
  float *snap;      /* server vector [nparams]                           */
  float *prev;      /* rank 0: theta^t's parameters [nparams]            */
  fh_accum gacc;    /* sum of the round's client gradients [glen]        */
  int *traced;      /* clients hosted here that stored a gradient this round */
  int ntraced;
  int R;            /* rows held                                         */
  double *rows;     /* rank 0 [R][nl][metrics]                              */
  double *density;  /* rank 0 [R] the density clients started each round with */
  int begun;        /* the first round of this execution is past         */
  /* cost of masking, this rank */
  double t_mask, n_scored;
  long long n_masked;
};


/* The inertia record's part of the setup (every rank): the snapshot server
 * vector, the gradient sum, rank 0's rows. */
void fh_lips_inertia_setup(fh_run *run, struct fh_lips *L);
/* The add-on's round hooks (fl/addon.h): the record's rows of round t. */
int fh_lips_inertia_round_begin(fh_run *run, void *state, int t, const char *run_dir);
int fh_lips_inertia_round_end(fh_run *run, void *state, int t, const int *sampled, int m, const char *run_dir);

#endif

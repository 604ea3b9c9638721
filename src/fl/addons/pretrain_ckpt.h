/* The pretraining checkpoint (`fedhpc pretrain`, src/fl/addons/pretrain.c):
 * PM.ckpt.h5 holds /params and /momentum [nparams], /buffers [nbuffers] when
 * the model has any, and the attributes epoch (epochs done), steps (optimiser
 * steps taken) and arch. Written as PM.ckpt.h5.tmp, then renamed. */
#ifndef FH_PRETRAIN_CKPT_H
#define FH_PRETRAIN_CKPT_H

#include <mpi.h>

#include "nn/model.h"

/* What a checkpoint restores: the model's parameters and buffers, and these. */
typedef struct {
  fh_model *m;
  float *momentum; /* [nparams] */
  long long steps; /* optimiser steps taken */
  int epoch;       /* epochs done */
} fh_pretrain_state;

/* Rank 0: writes st to path. */
int fh_pretrain_ckpt_write(const char *path, const fh_pretrain_state *st);
/* Collective: rank 0 reads path into st, every rank gets it (errors agreed). */
int fh_pretrain_ckpt_read(const char *path, fh_pretrain_state *st, MPI_Comm comm, int rank);

#endif

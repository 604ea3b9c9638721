/* AugFL (arXiv:2503.02154; without the pretrained model: ADMM-FedMeta,
 * arXiv:2012.08677): federated meta-learning by inexact ADMM, the server's
 * pretrained model (PM) entering as a regulariser R evaluated only at the
 * server. The algorithm is src/fl/alg/augfl.c; this header exposes what its tests
 * check directly. */
#ifndef FH_AUGFL_H
#define FH_AUGFL_H

#include "fl/run.h"

/* w_i = n_i / sum_j n_j of source client k (n = its train + test rows). */
double fh_augfl_client_weight(const fh_run *run, int client);

/* Rank 0, after a server step with lambda > 0: grad R(theta^t) [nparams]
 * and R(theta^t) of that step; NULL when the run has no regulariser. */
const float *fh_augfl_reg_grad(const fh_run *run, double *R);

#endif

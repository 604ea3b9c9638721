/* AugFL (Yue et al., arXiv:2503.02154; with lambda = 0 it is ADMM-FedMeta,
 * arXiv:2012.08677): the clients learn a meta-model theta by inexact ADMM on
 *
 *   min sum_i w_i f_i(theta_i) + lambda R(theta)   s.t. theta_i = theta,
 *   f_i(theta) = L(theta - alpha grad L(theta; D_i^tr); D_i^te)   (one-step MAML)
 *
 * and the server's pretrained model (PM) enters only through R, evaluated at
 * the server on its own rows (data.server_fraction; no client sees them):
 *
 *   R(theta) = mean over the server rows of gamma CE(z, y) + a_kd T^2 KL(softmax(PM/T) || softmax(z/T))
 *              [+ a_hint MSE(c(f), f_PM)]
 *
 * z the meta-model's logits, f its classifier input (features), f_PM the
 * PM's; c the connector: the identity when the widths agree, else a linear
 * map d -> d_PM learnt at the server (server state "augfl.connector", one
 * SGD step of rate augfl.hint_lr per round on R's hint term, taken with g_R;
 * the authors' distillation code trains its connectors jointly with the
 * student). The PM runs in evaluation mode (its BatchNorm running statistics
 * from its model file); the meta-model's BatchNorm in R's pass normalises by
 * each chunk of augfl.server_batch rows (augfl.server_bn = train, as the
 * authors' distillation loop, which puts the student in train() and the
 * teacher in eval()) or by its running statistics (eval). Any zoo model is
 * meta-model or PM: the pass is the nn engine's (fl/blocks/model_pass.h).
 *
 * Round t, every source client (all training clients take part):
 *   client i  k_i += 1; delta = 1 / (10 k_i + 100)
 *             ghat = g2 - alpha Hv  (fl/blocks/maml.h: g1 = grad L(theta; D^tr),
 *               phi = theta - alpha g1, g2 = grad L(phi; D^te), Hv by central
 *               differences of grad L(.; D^tr) at theta +- delta g2)
 *             theta_i = theta - (y_i + w_i ghat) / rho;  y_i += rho (theta_i - theta)
 *             uploads u_i = y_i + rho theta_i: one n-vector, one reduction
 *   server    g_R = grad R(theta^t), one pass over the server rows at theta^t
 *             (no stepping), data-parallel over all ranks (server_collective)
 *             theta^{t+1} = (sum_i u_i - lambda g_R) / (N rho)
 * with D^tr / D^te the client's train and test splits (an 80/20 cut: deck
 * partition.test_fraction = 0.25), w_i = n_i / sum_j n_j over the sources
 * (n_i = its train + test rows, as the authors' code weighs), N the number
 * of sources. So y_i^{t+1} = -w_i ghat_i^t, and theta^{t+1} is the
 * extrapolated step theta^t - [sum_i w_i (2 ghat_i^t - ghat_i^{t-1}) + lambda g_R] / (N rho).
 * Full batch by default, as the authors; augfl.batch = b draws b rows of each
 * split per round from the client's stream (seed, FH_RNG_SHUFFLE, client, round).
 *
 * Second-order server step (augfl.step = second_order): over a block of
 * parameters (augfl.second_order_block: the classifier, or the whole model
 * up to augfl.second_order_max_n parameters),
 * (N rho I + lambda H) theta = sum u_i - lambda (g_R - H theta^t), H the
 * Gauss-Newton matrix of R's CE and KL terms at theta^t, i.e. with
 * Delta = theta - theta^t
 *   (N rho I + lambda H) Delta = sum u_i - N rho theta^t - lambda g_R,
 * formed and solved on the BLACS grid of all ranks (fl/blocks/gn_head.h); the other
 * parameters take the linearised step. The hint term is not in H: it enters
 * through g_R only. Over the whole model the Jacobian is taken per row in
 * evaluation mode (fl/blocks/gn_head.h), the classifier's from the features of R's
 * pass.
 *
 * CRD (augfl.crd_weight > 0; the default R is the authors' 1 CE + 0 KL +
 * 0.8 CRD): R gains a_crd CRD(f, f_PM) (fl/blocks/crd.h): the features are
 * embedded by two linear heads, L2-normalised and contrasted against memory
 * banks of every server row's embeddings, K negatives per row drawn from rows
 * of other classes (stream (seed, FH_RNG_ALGORITHM, 2^31 + row, pass)). Its
 * feature gradient joins R's backward through the meta-model. Before the
 * pass (augfl.crd_head_steps = S > 0) the heads alone take S momentum-SGD
 * steps (augfl.crd_head_lr, _momentum, _weight_decay; the authors' 0.002,
 * 0.9, 5e-4) on a_crd CRD over all server rows at theta^t, fresh draws each
 * step, banks fixed (the authors train heads and student together per
 * minibatch). Once per round, after the pass at theta^t: the heads take one
 * SGD step of augfl.crd_lr on their CRD gradient (summed with g_R), and
 * every row's memory moves to norm(m M + (1 - m) v) from this pass's
 * embeddings. Z is set at the first chunk of shard 0 in the first pass.
 * Heads, their momentum, banks, Z and the pass count are server state; the
 * second-order step leaves CRD out of H (g_R only).
 *
 * model.outputs > classes (the authors' 100 logits): the meta-model's logits
 * O, its softmax and argmax over all of them; the PM has pm.outputs (the
 * authors': the data set's classes), other than O only without the KL term
 * and the second-order step.
 *
 * State: per client the dual y_i [nparams] and the counter k_i (client store,
 * so they survive checkpoints); nothing else lasts beyond a round. Buffers
 * (BatchNorm statistics): augfl.bn_buffers = local (the authors': only
 * parameters() travel) keeps each source's own in the client store and never
 * moves the global model's; averaged gives the global model the sources'
 * mean. Evaluation: source clients personalise with one full-batch SGD step
 * of rate alpha (client_model, from their own statistics when local); the
 * target clients are eval.holdout_clients with eval.adapt_steps = 1 and
 * eval.adapt_lr = alpha, as the authors evaluate, scored with the batch
 * statistics of their test split (eval.target_bn = train, the authors'). */
#include "fl/alg/augfl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "core/profile.h"
#include "core/rng.h"
#include "fl/algorithm.h"
#include "fl/client_state.h"
#include "fl/blocks/crd.h"
#include "fl/blocks/gn_head.h"
#include "fl/blocks/local_sgd.h"
#include "fl/blocks/model_pass.h"
#include "fl/payload.h"
#include "fl/blocks/maml.h"
#include "fl/addons/pretrain.h"
#include "fl/blocks/server_shards.h"
#include "io/model_file.h"
#include "nn/layer.h"
#include "nn/loss.h"
#include "nn/optim.h"

static const fh_key_spec augfl_keys[] = {
    {"augfl.alpha", FH_T_REAL, "0.05", 0, 1e6, NULL,
     "inner (adaptation) step size alpha of the one-step MAML objective; set eval.adapt_lr to it"},
    {"augfl.rho", FH_T_REAL, "0.7", 1e-9, 1e9, NULL, "ADMM penalty rho"},
    {"augfl.lambda", FH_T_REAL, "5", 0, 1e9, NULL,
     "weight of the pretrained model's regulariser R; 0 = no PM (ADMM-FedMeta)"},
    {"augfl.temperature", FH_T_REAL, "4", 1e-6, 1e6, NULL, "distillation temperature T of R"},
    {"augfl.gamma", FH_T_REAL, "1", 0, 1e6, NULL,
     "weight of R's cross-entropy on the server rows (the authors' opt.gamma, 1)"},
    {"augfl.kd_weight", FH_T_REAL, "0", 0, 1e6, NULL,
     "weight a_kd of R's T^2 KL to the PM's soft labels (the authors' opt.alpha, 0)"},
    {"augfl.crd_weight", FH_T_REAL, "0.8", 0, 1e6, NULL,
     "weight of R's contrastive representation distillation term (the authors' opt.beta, 0.8); 0 = off"},
    {"augfl.crd_k", FH_T_INT, "16384", 1, 1 << 24, NULL,
     "CRD: negatives per row, drawn from the server rows of other classes (the authors' nce_k)"},
    {"augfl.crd_dim", FH_T_INT, "128", 1, 1 << 16, NULL, "CRD: width of the two embeddings (feat_dim)"},
    {"augfl.crd_t", FH_T_REAL, "0.07", 1e-6, 1e6, NULL, "CRD: temperature of the NCE scores (nce_t)"},
    {"augfl.crd_momentum", FH_T_REAL, "0.5", 0, 1, NULL, "CRD: momentum of the memory banks (nce_m)"},
    {"augfl.crd_lr", FH_T_REAL, "0", 0, 1e6, NULL,
     "CRD: step size of the embedding heads' one plain SGD step per round after R's pass, on the pass's CRD "
     "gradient; 0 = none (ours; one such step of 0.002 to 1 diverged on Fashion-MNIST with the authors' CNN, "
     "docs/augfl.md; augfl.crd_head_steps trains the heads as the authors do, before the pass)"},
    {"augfl.crd_head_steps", FH_T_INT, "0", 0, 100000, NULL,
     "CRD: momentum-SGD steps the embedding heads (only) take each round on R's CRD term, each over all server "
     "rows with theta^t fixed, before R's gradient is taken; 0 = none (ours: the authors' server steps heads and "
     "student together once per minibatch of 128 for one epoch, i.e. ceil(rows / 128) steps)"},
    {"augfl.crd_head_lr", FH_T_REAL, "0.002", 0, 1e6, NULL, "CRD: the heads' step size (the authors' learning_rate)"},
    {"augfl.crd_head_momentum", FH_T_REAL, "0.9", 0, 1, NULL, "CRD: the heads' SGD momentum (the authors' momentum)"},
    {"augfl.crd_head_weight_decay", FH_T_REAL, "5e-4", 0, 1e6, NULL,
     "CRD: the heads' L2 weight decay (the authors' weight_decay)"},
    {"augfl.crd_head_carry", FH_T_BOOL, "false", 0, 0, NULL,
     "CRD: keep the heads' momentum from round to round; false = a fresh optimiser each round (the authors' "
     "train() builds one per call)"},
    {"augfl.bn_buffers", FH_T_ENUM, "local", 0, 0, "local|averaged",
     "BatchNorm running statistics: each source keeps its own and the global model's never move (local, the "
     "authors': only parameters() travel), or the global model takes the sources' mean (averaged)"},
    {"augfl.batch", FH_T_INT, "0", 0, 1 << 30, NULL,
     "rows of D^tr and of D^te a client step uses, drawn per round; 0 = all (full batch, as the authors)"},
    {"augfl.server_batch", FH_T_INT, "128", 1, 1 << 20, NULL,
     "rows per forward/backward in the server's pass over its rows (BatchNorm normalises by them)"},
    {"augfl.server_bn", FH_T_ENUM, "train", 0, 0, "train|eval",
     "BatchNorm of the meta-model in the server's pass: batch statistics (train, as the authors' distillation "
     "loop) or running statistics (eval); the PM is always in eval mode"},
    {"augfl.hint_weight", FH_T_REAL, "0", 0, 1e6, NULL,
     "weight a_hint of R's feature-hint term: MSE between the meta-model's classifier input (through a "
     "connector) and the PM's; 0 = off"},
    {"augfl.hint_lr", FH_T_REAL, "0.05", 0, 1e6, NULL,
     "hint term: step size of the learnable linear connector (used when the two feature widths differ)"},
    {"augfl.step", FH_T_ENUM, "linear", 0, 0, "linear|second_order",
     "server step: linearised R, or its Gauss-Newton curvature over augfl.second_order_block solved with "
     "ScaLAPACK"},
    {"augfl.second_order_block", FH_T_ENUM, "head", 0, 0, "head|all",
     "second_order: the parameters whose curvature is kept: the classifier (head) or the whole model (all)"},
    {"augfl.second_order_max_n", FH_T_INT, "5000", 1, 1e9, NULL,
     "second_order_block = all: refuse a model of more parameters than this (the ranks hold an n x n matrix)"},
    {"augfl.gn_chunk", FH_T_INT, "128", 1, 1 << 20, NULL,
     "second_order: server rows per process row in one chunk of the Jacobian (bounds its memory)"},
    {"augfl.gn_max", FH_T_INT, "60000", 1, 1e9, NULL,
     "second_order: refuse a classifier of more unknowns C (d + 1) than this"},
    FH_KEYS_END};

typedef struct {
  fh_local_sgd sgd;        /* gradients over the client's splits (scratch) */
  fh_perfedavg_step step;  /* the meta-gradient (HF) with alpha           */
  float alpha, rho, lambda, T, gamma, akd;
  int batch;
  int N;                   /* source clients                               */
  double ntotal;           /* sum of n_i over the sources                  */
  int fy, fk;              /* client-store fields y_i, k_i                 */
  int bn_local, fb;        /* augfl.bn_buffers = local; the field of a source's buffers [nb] (-1: none) */
  size_t np, nb;
  float *ghat;             /* [np]                                         */
  float *contrib;          /* [model_n] u_i | buffers                      */
  int *idx_tr, *idx_te, idx_cap;
  /* the server's regulariser (lambda > 0) */
  int server;
  fh_server_shards sh;
  int C, O, OT, d, sbatch; /* classes, logits (model.outputs: O >= C), the PM's logits, features, rows per chunk */
  float *teacher;          /* [sh.rows.n, OT] PM logits of this rank's rows */
  fh_model_pass *pass;
  fh_accum racc;           /* [np + nconn + 1]: gradient, connector gradient and R sums over the rows */
  float *vec;              /* [np + nconn + 1]                             */
  float *dce, *dkd, *pce, *ps, *pt; /* [sbatch, O] each                   */
  float *gR;               /* [np] rank 0                                  */
  double Rval;
  int server_train;        /* the meta-model's BatchNorm mode in the pass  */
  /* the feature-hint term (hint_weight > 0) */
  float ahint, hint_lr;
  int dt;                  /* the PM's feature width                       */
  float *tfeat;            /* [sh.rows.n, dt] PM features of this rank's rows */
  float *conn;             /* server state: connector W [dt, d] | b [dt]; NULL: identity */
  float *conn_ready;       /* server state [1]: 1 once the connector is drawn */
  size_t nconn;            /* its floats (0: identity)                     */
  float *cf, *dcf, *dfeat; /* [sbatch, dt], [sbatch, dt], [sbatch, d]      */
  /* contrastive representation distillation (crd_weight > 0, fl/blocks/crd.h) */
  float acrd, crd_lr;
  fh_crd crd;              /* heads, banks and Z point into server state   */
  float *crd_ready;        /* server state [1]: 1 once heads and banks are drawn */
  double *crd_pass;        /* server state [1]: the passes done (the draws' round key) */
  size_t nhead;            /* the heads' floats (0: no CRD)                */
  int32_t *by_class;       /* [sh.total] the server rows class by class    */
  int64_t *cls_off;        /* [C + 1]                                      */
  int *rcount, *rdispl;    /* [nranks] each rank's rows x crd_dim (the banks' gather) */
  int32_t *cidx;           /* [sbatch, K + 1] a chunk's memory rows        */
  float *dfs;              /* [sbatch, d] CRD's feature gradient           */
  float *vs_all, *vt_all;  /* [sh.rows.n, crd_dim] this pass's embeddings, then the new bank rows */
  /* the heads' own steps before g_R (augfl.crd_head_steps) */
  int head_steps, head_carry;
  fh_sgd head_opt;         /* lr, momentum, weight decay (torch.optim.SGD)  */
  float *head_buf;         /* server state [nhead]: the heads' momentum      */
  double *head_nsteps;     /* server state [1]: steps of that buffer (carry) */
  float *sfeat;            /* [sh.rows.n, d] the meta-model's features at theta^t */
  fh_accum hacc;           /* [nhead + 1]: head gradient and CRD sums of a step */
  float *hvec;             /* [nhead + 1]                                    */
  /* second order */
  int second, block_all;
  fh_gn_head *gn;
  size_t head_off;         /* offset of the block: the classifier's weight, 0 for all */
  int nh;                  /* its unknowns: O (d + 1), or nparams          */
  float *gnrows;           /* [sh.rows.n, d + 2O]: f | p | q of each row   */
  double *delta;           /* [nh] rank 0: the solved Delta                */
} augfl_state;

double fh_augfl_client_weight(const fh_run *run, int client) {
  const augfl_state *s = run->alg_state;
  const fh_client_data *cd = &run->data->clients[client - run->first_client];
  return (double)(cd->train.n + cd->test.n) / s->ntotal;
}

const float *fh_augfl_reg_grad(const fh_run *run, double *R) {
  const augfl_state *s = run->alg_state;
  if (R) *R = s->Rval;
  return s->server ? s->gR : NULL;
}

/* ---- setup ----------------------------------------------------------------------- */

/* The PM's logits (and, with the hint term, features) of this rank's server
 * rows, in evaluation mode (its BatchNorm running statistics from the model
 * file), and its accuracy on all of them. */
static int load_teacher(fh_run *run, augfl_state *s) {
  const fh_config *cfg = run->cfg;
  char path[4096];
  fh_pm_path(cfg, path, sizeof path);
  fh_model *pm = NULL;
  int rc = fh_pm_create(&pm, cfg, run->data->c, run->data->h, run->data->w, s->OT, s->sbatch);
  if (rc == 0) {
    rc = fh_model_load_params(path, pm, fh_model_params(pm));
    if (rc == 0) rc = fh_model_load_buffers(path, pm, fh_model_buffers(pm));
    if (rc != 0) fh_error_prefix("pm.path: ");
  }
  fh_model_pass *pp = NULL;
  if (rc == 0) rc = fh_model_pass_create(&pp, pm, s->sbatch);
  if (rc == 0) s->dt = fh_model_feature_dim(pm);
  long long cnt[2] = {0, s->sh.rows.n};
  const int n = s->sh.rows.n, dim = run->data->dim;
  s->teacher = fh_malloc((size_t)(n ? n : 1) * s->OT * sizeof(float));
  if ((s->ahint > 0 || s->acrd > 0) && rc == 0) s->tfeat = fh_malloc((size_t)(n ? n : 1) * s->dt * sizeof(float));
  /* in the chunks of the server pass (a product's last bits can depend on
   * its batch, so the chunks must not depend on the rank count) */
  for (int j = s->sh.s0; j < s->sh.s1 && rc == 0; j++) {
    int rb, re;
    fh_server_shard_rows(&s->sh, j, &rb, &re);
    for (int at = rb; at < re; at += s->sbatch) {
      const int B = re - at < s->sbatch ? re - at : s->sbatch;
      const float *z = fh_model_pass_forward(pp, s->sh.rows.x + (size_t)at * dim, B, 0);
      memcpy(s->teacher + (size_t)at * s->OT, z, (size_t)B * s->OT * sizeof(float));
      if (s->tfeat)
        memcpy(s->tfeat + (size_t)at * s->dt, fh_model_pass_features(pp), (size_t)B * s->dt * sizeof(float));
      for (int b = 0; b < B; b++) {
        int best = 0;
        for (int c = 1; c < s->OT; c++)
          if (z[b * s->OT + c] > z[b * s->OT + best]) best = c;
        cnt[0] += best == s->sh.rows.y[at + b];
      }
    }
  }
  rc = fh_error_agree(run->comm, rc);
  if (rc != 0) {
    fh_model_pass_free(pp);
    fh_model_free(pm);
    return rc;
  }
  MPI_Allreduce(MPI_IN_PLACE, cnt, 2, MPI_LONG_LONG, MPI_SUM, run->comm);
  char summary[400];
  fh_model_summary(pm, summary, sizeof summary);
  fh_info("augfl: pretrained model %s (%s); accuracy %.2f%% on the %lld server rows", path, summary,
          100.0 * cnt[0] / (double)(cnt[1] ? cnt[1] : 1), cnt[1]);
  fh_model_pass_free(pp);
  fh_model_free(pm);
  return 0;
}

/* CRD's state (fl/blocks/crd.h): the heads (meta-model's d features and the
 * PM's dt to crd_dim), the two banks over all server rows and Z, as server
 * state (checkpointed; every rank holds and steps the same copy, since any
 * row's negatives index any row), and the labels of all server rows class by
 * class for the draws. */
static int setup_crd(fh_run *run, augfl_state *s) {
  const fh_config *cfg = run->cfg;
  const int D = (int)fh_cfg_int(cfg, "augfl.crd_dim"), K = (int)fh_cfg_int(cfg, "augfl.crd_k");
  const int64_t N = s->sh.total;
  if (N * (int64_t)D >= INT32_MAX)
    return FH_FAIL(FH_ERR_CONFIG, "augfl.crd_weight > 0: %lld server rows x augfl.crd_dim = %d is too large a "
                                  "memory bank; lower data.server_fraction or augfl.crd_dim", (long long)N, D);
  fh_crd_create(&s->crd, s->d, s->dt, D, K, (float)fh_cfg_real(cfg, "augfl.crd_t"),
                (float)fh_cfg_real(cfg, "augfl.crd_momentum"), N, s->sbatch);
  s->nhead = fh_crd_head_n(s->d, s->dt, D);
  s->crd.head = fh_run_server_state(run, "augfl.crd_heads", s->nhead);
  s->crd.mem_s = fh_run_server_state(run, "augfl.crd_memory_s", (size_t)N * D);
  s->crd.mem_t = fh_run_server_state(run, "augfl.crd_memory_t", (size_t)N * D);
  s->crd.Z = fh_run_server_state(run, "augfl.crd_z", 2);
  s->crd_ready = fh_run_server_state(run, "augfl.crd_ready", 1);
  s->crd_pass = fh_run_server_state_typed(run, "augfl.crd_pass", FH_STATE_F64, 1);
  /* the labels of all rows, in rank order (= row order: a rank holds a contiguous block) */
  s->rcount = fh_malloc((size_t)run->nranks * sizeof(int));
  s->rdispl = fh_malloc((size_t)run->nranks * sizeof(int));
  const int n = s->sh.rows.n;
  MPI_Allgather(&n, 1, MPI_INT, s->rcount, 1, MPI_INT, run->comm);
  for (int r = 0, at = 0; r < run->nranks; r++) s->rdispl[r] = at, at += s->rcount[r];
  int32_t *y = fh_malloc((size_t)N * sizeof(int32_t));
  MPI_Allgatherv(s->sh.rows.y, n, MPI_INT32_T, y, s->rcount, s->rdispl, MPI_INT32_T, run->comm);
  s->cls_off = fh_calloc((size_t)s->C + 1, sizeof(int64_t));
  for (int64_t i = 0; i < N; i++) s->cls_off[y[i] + 1]++;
  int rc = 0;
  for (int c = 0; c < s->C; c++) {
    if (s->cls_off[c + 1] == N)
      rc = FH_FAIL(FH_ERR_CONFIG, "augfl.crd_weight > 0: all %lld server rows are of class %d, so CRD has no "
                                  "negatives; raise data.server_fraction or set augfl.crd_weight = 0", (long long)N, c);
    s->cls_off[c + 1] += s->cls_off[c];
  }
  s->by_class = fh_malloc((size_t)(N ? N : 1) * sizeof(int32_t));
  int64_t *fill = fh_malloc((size_t)s->C * sizeof(int64_t));
  memcpy(fill, s->cls_off, (size_t)s->C * sizeof(int64_t));
  for (int64_t i = 0; i < N; i++) s->by_class[fill[y[i]]++] = (int32_t)i;
  free(fill);
  free(y);
  FH_TRY(rc);
  for (int r = 0; r < run->nranks; r++) s->rcount[r] *= D, s->rdispl[r] *= D;
  s->cidx = fh_malloc((size_t)s->sbatch * (K + 1) * sizeof(int32_t));
  s->dfs = fh_malloc((size_t)s->sbatch * s->d * sizeof(float));
  s->vs_all = fh_malloc((size_t)(n ? n : 1) * D * sizeof(float));
  s->vt_all = fh_malloc((size_t)(n ? n : 1) * D * sizeof(float));
  fh_info("augfl: CRD a_crd = %g: heads %d -> %d and %d -> %d, %d negatives per row from memory banks of %lld "
          "rows, T %g, momentum %g, head step %g per round",
          (double)s->acrd, s->d, D, s->dt, D, K, (long long)N, (double)s->crd.T, (double)s->crd.mom,
          (double)s->crd_lr);
  if (s->head_steps > 0) {
    s->head_buf = fh_run_server_state(run, "augfl.crd_head_momentum", s->nhead);
    s->head_nsteps = fh_run_server_state_typed(run, "augfl.crd_head_nsteps", FH_STATE_F64, 1);
    s->sfeat = fh_malloc((size_t)(n ? n : 1) * s->d * sizeof(float));
    fh_accum_create(&s->hacc, s->nhead + 1, (int)fh_cfg_int(cfg, "run.accum_bits"),
                    (int)((s->sh.max_rows + s->sbatch - 1) / s->sbatch) * s->sh.nshards);
    s->hvec = fh_malloc((s->nhead + 1) * sizeof(float));
    fh_info("augfl: CRD heads take %d momentum-SGD step%s per round over the server rows before g_R (lr %g, "
            "momentum %g, weight decay %g, %s)", s->head_steps, s->head_steps == 1 ? "" : "s",
            (double)s->head_opt.lr, (double)s->head_opt.momentum, (double)s->head_opt.weight_decay,
            s->head_carry ? "momentum carried across rounds" : "a fresh optimiser each round");
  }
  return 0;
}

/* The server (augfl.lambda > 0): its rows, the PM's logits of them, the pass
 * for R's gradient, the feature hint's connector, CRD's state. */
static int setup_server(fh_run *run, augfl_state *s) {
  const fh_config *cfg = run->cfg;
  int rc = fh_server_shards_load(&s->sh, cfg, run->rank, run->nranks);
  if (rc == 0) rc = fh_model_pass_create(&s->pass, run->model, s->sbatch);
  FH_TRY(fh_error_agree(run->comm, rc));
  FH_TRY(load_teacher(run, s));
  if (s->ahint > 0) {
    /* the connector: identity when the widths agree, else a learnable Linear(d, dt) (server state) */
    if (s->dt != s->d) {
      s->nconn = (size_t)s->dt * (s->d + 1);
      s->conn = fh_run_server_state(run, "augfl.connector", s->nconn);
      s->conn_ready = fh_run_server_state(run, "augfl.connector_ready", 1);
    }
    s->cf = fh_malloc((size_t)s->sbatch * s->dt * sizeof(float));
    s->dcf = fh_malloc((size_t)s->sbatch * s->dt * sizeof(float));
    s->dfeat = fh_malloc((size_t)s->sbatch * s->d * sizeof(float));
  }
  if (s->acrd > 0) FH_TRY(setup_crd(run, s));
  fh_accum_create(&s->racc, s->np + s->nconn + s->nhead + 1, (int)fh_cfg_int(cfg, "run.accum_bits"),
                  (int)((s->sh.max_rows + s->sbatch - 1) / s->sbatch) * s->sh.nshards);
  s->vec = fh_malloc((s->np + s->nconn + s->nhead + 1) * sizeof(float));
  const size_t bc = (size_t)s->sbatch * s->O * sizeof(float);
  s->dce = fh_malloc(bc), s->dkd = fh_malloc(bc), s->pce = fh_malloc(bc), s->ps = fh_malloc(bc);
  s->pt = fh_malloc(bc);
  s->gR = fh_calloc(s->np, sizeof(float));
  fh_info("augfl: R = %g CE + %g T^2 KL (T = %g)%s%s over %lld server rows in %d shards, meta-model BatchNorm in %s "
          "mode", (double)s->gamma, (double)s->akd, (double)s->T, s->ahint > 0 ? " + a_hint MSE(features)" : "",
          s->acrd > 0 ? " + a_crd CRD(features)" : "",
          (long long)s->sh.total, s->sh.nshards, s->server_train ? "train" : "eval");
  if (s->ahint > 0)
    fh_info("augfl: feature hint a_hint = %g between the meta-model's %d features and the PM's %d through %s",
            (double)s->ahint, s->d, s->dt, s->conn ? "a learnable linear connector" : "the identity");
  return 0;
}

/* The second-order server step (augfl.step = second_order): the block it
 * solves for (the classifier, or the whole model) and its Gauss-Newton system
 * on the BLACS grid. */
static int setup_second_order(fh_run *run, augfl_state *s) {
  const fh_config *cfg = run->cfg;
  if (s->block_all) {
    s->head_off = 0;
    s->nh = (int)s->np;
    if ((long long)s->np > fh_cfg_int(cfg, "augfl.second_order_max_n"))
      return FH_FAIL(FH_ERR_CONFIG, "augfl.second_order_block = all: model.arch = %s has %zu parameters, more "
                                    "than augfl.second_order_max_n = %lld; use augfl.second_order_block = head, "
                                    "or raise the limit if the ranks hold a %zu x %zu matrix",
                     fh_model_arch(run->model), s->np, fh_cfg_int(cfg, "augfl.second_order_max_n"), s->np, s->np);
    FH_TRY(fh_gn_model_create(&s->gn, run->comm, s->pass, s->nh, run->data->dim, s->O, s->T,
                              (int)fh_cfg_int(cfg, "augfl.gn_chunk")));
  } else {
    const fh_param_view *w = fh_model_view(run->model, fh_model_header_first_view(run->model));
    s->head_off = w->offset;
    s->nh = s->O * (s->d + 1);
    if (s->head_off + (size_t)s->nh != s->np)
      return FH_FAIL(FH_ERR_CONFIG, "augfl.step = second_order: model.arch = %s does not end in its "
                                    "classifier's weight and bias", fh_model_arch(run->model));
    if (s->nh > fh_cfg_int(cfg, "augfl.gn_max"))
      return FH_FAIL(FH_ERR_CONFIG, "augfl.step = second_order: the classifier has %d unknowns, more than "
                                    "augfl.gn_max = %lld; raise augfl.gn_max if the ranks hold a %d x %d matrix",
                     s->nh, fh_cfg_int(cfg, "augfl.gn_max"), s->nh, s->nh);
    FH_TRY(fh_gn_head_create(&s->gn, run->comm, s->d, s->O, (int)fh_cfg_int(cfg, "augfl.gn_chunk")));
    s->gnrows = fh_malloc((size_t)(s->sh.rows.n ? s->sh.rows.n : 1) * (s->d + 2 * s->O) * sizeof(float));
  }
  s->delta = fh_calloc((size_t)s->nh, sizeof(double));
  fh_info("augfl: second-order step over %s (%d unknowns) on the BLACS grid of %d ranks",
          s->block_all ? "the whole model" : "the classifier", s->nh, run->nranks);
  return 0;
}

static int augfl_setup(fh_run *run) {
  FH_TRY(fh_local_sgd_refuse_augment(run->data, "augfl", "its full-batch gradients of the client splits"));
  const fh_config *cfg = run->cfg;
  augfl_state *s = fh_calloc(1, sizeof *s);
  run->alg_state = s;
  s->np = fh_model_nparams(run->model);
  s->nb = fh_model_nbuffers(run->model);
  s->alpha = (float)fh_cfg_real(cfg, "augfl.alpha");
  s->rho = (float)fh_cfg_real(cfg, "augfl.rho");
  s->lambda = (float)fh_cfg_real(cfg, "augfl.lambda");
  s->T = (float)fh_cfg_real(cfg, "augfl.temperature");
  s->gamma = (float)fh_cfg_real(cfg, "augfl.gamma");
  s->akd = (float)fh_cfg_real(cfg, "augfl.kd_weight");
  s->batch = (int)fh_cfg_int(cfg, "augfl.batch");
  s->sbatch = (int)fh_cfg_int(cfg, "augfl.server_batch");
  s->second = fh_cfg_enum(cfg, "augfl.step") == 1;                   /* linear|second_order */
  s->block_all = fh_cfg_enum(cfg, "augfl.second_order_block") == 1;  /* head|all */
  s->server_train = fh_cfg_enum(cfg, "augfl.server_bn") == 0;        /* train|eval */
  s->ahint = (float)fh_cfg_real(cfg, "augfl.hint_weight");
  s->hint_lr = (float)fh_cfg_real(cfg, "augfl.hint_lr");
  s->acrd = (float)fh_cfg_real(cfg, "augfl.crd_weight");
  s->crd_lr = (float)fh_cfg_real(cfg, "augfl.crd_lr");
  s->head_steps = (int)fh_cfg_int(cfg, "augfl.crd_head_steps");
  s->head_carry = fh_cfg_bool(cfg, "augfl.crd_head_carry");
  s->head_opt = (fh_sgd){.lr = (float)fh_cfg_real(cfg, "augfl.crd_head_lr"),
                         .momentum = (float)fh_cfg_real(cfg, "augfl.crd_head_momentum"),
                         .weight_decay = (float)fh_cfg_real(cfg, "augfl.crd_head_weight_decay")};
  s->C = run->data->num_classes;
  s->O = fh_model_num_classes(run->model);
  FH_TRY(fh_pm_outputs(cfg, s->C, &s->OT)); /* the meta-model's unless pm.outputs says otherwise */
  s->d = fh_model_feature_dim(run->model);
  fh_local_sgd_create(&s->sgd, cfg, run->data->dim, s->np);
  fh_perfedavg_step_create(&s->step, 1, s->alpha, 1.0f, 1.0f, &s->sgd, run->model);
  s->ghat = fh_malloc(s->np * sizeof(float));
  s->contrib = fh_malloc(run->model_n * sizeof(float));

  /* every source takes part in every round: the ADMM keeps a dual per client */
  const int Ktrain = run->map.num_clients - run->nholdout;
  long long m = fh_cfg_int(cfg, "run.clients_per_round");
  if (m <= 0) m = llround(fh_cfg_real(cfg, "run.client_fraction") * Ktrain);
  if (m != Ktrain)
    return FH_FAIL(FH_ERR_CONFIG, "run.algorithm = augfl: every source client takes part in every round (the ADMM "
                                  "keeps a dual per client), but %lld of %d would; set run.client_fraction = 1 and "
                                  "run.clients_per_round = 0", m, Ktrain);
  if (s->second && s->lambda == 0)
    return FH_FAIL(FH_ERR_CONFIG, "augfl.step = second_order keeps the curvature of R, which augfl.lambda = 0 "
                                  "switches off; set augfl.lambda > 0 or augfl.step = linear");
  if (s->ahint > 0 && s->lambda == 0)
    fh_warn("augfl.hint_weight = %g does nothing with augfl.lambda = 0 (no PM)", (double)s->ahint);
  if (s->lambda == 0) s->acrd = 0; /* no PM: no CRD (the default weight is not a request) */
  if (s->lambda > 0 && s->OT != s->O && (s->akd > 0 || s->second))
    return FH_FAIL(FH_ERR_CONFIG, "pm.outputs = %d but the meta-model has %d: R's KL term and the second-order step "
                                  "compare the two models' logits; set pm.outputs = 0, or augfl.kd_weight = 0 and "
                                  "augfl.step = linear", s->OT, s->O);
  s->N = Ktrain;
  long long ntot = 0;
  for (int i = 0; i < run->nlocal; i++) {
    const int k = run->first_client + i;
    if (!fh_run_is_holdout(run, k)) ntot += run->data->clients[i].train.n + run->data->clients[i].test.n;
  }
  MPI_Allreduce(MPI_IN_PLACE, &ntot, 1, MPI_LONG_LONG, MPI_SUM, run->comm);
  s->ntotal = (double)ntot;
  FH_TRY(fh_client_store_field(run->state, "augfl.y", FH_STATE_F32, s->np, &s->fy));
  FH_TRY(fh_client_store_field(run->state, "augfl.k", FH_STATE_I32, 1, &s->fk));
  s->bn_local = fh_cfg_enum(cfg, "augfl.bn_buffers") == 0; /* local|averaged */
  s->fb = -1;
  if (s->bn_local && s->nb > 0) FH_TRY(fh_client_store_field(run->state, "augfl.buffers", FH_STATE_F32, s->nb, &s->fb));
  if (s->sgd.iterations > 0)
    return FH_FAIL(FH_ERR_CONFIG, "run.algorithm = augfl takes one ADMM step per client and round (augfl.batch sets "
                                  "its rows); train.iterations = %lld is not honoured: remove it",
                   s->sgd.iterations);
  if (s->sgd.opt.momentum > 0 || s->sgd.opt.weight_decay > 0)
    fh_warn("run.algorithm = augfl takes plain gradients: train.momentum and train.weight_decay do not apply");

  s->server = s->lambda > 0;
  /* The linearised server step moves theta by lambda g_R / (N rho): a step of
   * that rate on R, whose logit gradient is gamma (p - y) + a_kd T (q_T - p_T),
   * so up to lambda (gamma + a_kd T) / (N rho) per unit of logit error. On
   * Fashion-MNIST (40 sources, rho 0.7, lambda 5) 0.18 (gamma 1, a_kd 0) is
   * stable and 0.89 (a_kd 1, T 4) diverged (docs/augfl.md, "Why the deck
   * diverged"); the 0.5 bound below is ours, between the two. */
  const double r_rate =
      (double)s->lambda * ((double)s->gamma + (double)s->akd * (double)s->T) / (s->N * (double)s->rho);
  if (s->server && r_rate > 0.5)
    fh_warn("augfl: the server step on R moves the logits at rate lambda (gamma + kd_weight T) / (N rho) = %.2f "
            "(%d sources); above about 0.5 it diverged on Fashion-MNIST: lower augfl.lambda or augfl.kd_weight, or "
            "raise augfl.rho",
            r_rate, s->N);
  fh_info("augfl: %d source clients, rho %g, alpha %g, lambda %g%s, %s server step, %s client steps", s->N,
          (double)s->rho, (double)s->alpha, (double)s->lambda, s->server ? "" : " (no PM: ADMM-FedMeta)",
          s->second ? "second-order" : "linearised", s->batch ? "minibatch" : "full-batch");
  if (!s->server) return 0;

  FH_TRY(setup_server(run, s));
  return s->second ? setup_second_order(run, s) : 0;
}

/* ---- the client ------------------------------------------------------------------- */

/* b rows of a split of n drawn from rng (all of them, in order, when b = 0 or
 * b >= n): the index set of the client's step. */
static fh_row_set draw_rows(augfl_state *s, const fh_split *sp, int *idx, fh_rng *rng) {
  if (s->batch <= 0 || s->batch >= sp->n) return (fh_row_set){sp, NULL, sp->n};
  fh_rng_permutation(rng, idx, sp->n);
  return (fh_row_set){sp, idx, s->batch};
}

static int augfl_client_update(fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep) {
  augfl_state *s = run->alg_state;
  const size_t np = s->np, mn = run->model_n;
  const fh_split *tr = &c->data->train, *te = &c->data->test;
  const float *theta = run->global;
  int32_t *k = fh_client_store_acquire(run->state, s->fk, c->id, NULL);
  float *y = fh_client_store_acquire(run->state, s->fy, c->id, NULL);
  k[0] += 1;
  const float delta = (float)(1.0 / (10.0 * k[0] + 100.0));
  const double w = (double)(tr->n + te->n) / s->ntotal, rho = s->rho;
  fh_model_load_state(c->model, theta);
  int fresh = 1;
  float *buf = s->fb >= 0 ? fh_client_store_acquire(run->state, s->fb, c->id, &fresh) : NULL;
  if (buf && !fresh) memcpy(fh_model_buffers(c->model), buf, s->nb * sizeof(float)); /* its own statistics */
  rep->weight = (double)(tr->n + te->n);
  rep->train_loss = 0;
  int rc = 0;
  if (tr->n > 0 && te->n > 0) {
    const int need = tr->n > te->n ? tr->n : te->n;
    if (s->batch > 0 && need > s->idx_cap) {
      free(s->idx_tr);
      free(s->idx_te);
      s->idx_tr = fh_malloc((size_t)need * sizeof(int));
      s->idx_te = fh_malloc((size_t)need * sizeof(int));
      s->idx_cap = need;
    }
    fh_rng rng;
    fh_rng_init(&rng, run->seed, FH_RNG_SHUFFLE, (uint32_t)c->id, (uint32_t)c->round);
    fh_row_set dtr = draw_rows(s, tr, s->idx_tr, &rng), dte = draw_rows(s, te, s->idx_te, &rng);
    rc = fh_maml_meta_gradient(&s->step, c->model, dtr, dte, dtr, delta, s->ghat, &rep->train_loss);
    fh_prof_count_flops(fh_model_flops_forward(c->model, 1) * (3.0 * dtr.n + dte.n) +
                        fh_model_flops_backward(c->model, 1) * (3.0 * dtr.n + dte.n));
  } else {
    memset(s->ghat, 0, np * sizeof(float)); /* nothing to learn from: the dual step alone */
  }
  if (rc == 0) {
    /* theta_i = theta - (y_i + w_i ghat) / rho;  y_i += rho (theta_i - theta);  u_i = y_i + rho theta_i */
    for (size_t i = 0; i < np; i++) {
      const float ti = (float)((double)theta[i] - ((double)y[i] + w * s->ghat[i]) / rho);
      y[i] = (float)((double)y[i] + rho * ((double)ti - theta[i]));
      s->contrib[i] = (float)((double)y[i] + rho * ti);
    }
    if (mn > np) memcpy(s->contrib + np, fh_model_buffers(c->model), (mn - np) * sizeof(float));
  }
  if (buf && rc == 0) memcpy(buf, fh_model_buffers(c->model), s->nb * sizeof(float));
  int rc_b = buf ? fh_client_store_release(run->state, s->fb, c->id, rc == 0) : 0;
  int rc_y = fh_client_store_release(run->state, s->fy, c->id, rc == 0);
  int rc_k = fh_client_store_release(run->state, s->fk, c->id, rc == 0);
  FH_TRY(rc);
  FH_TRY(rc_b);
  FH_TRY(rc_y);
  FH_TRY(rc_k);
  return fh_accum_add(acc, s->contrib, 1.0);
}

/* One full-batch SGD step of rate alpha on the client's train split (with
 * augfl.bn_buffers = local from the source's own BatchNorm statistics). */
static int augfl_client_model(fh_run *run, fh_client_ctx *c) {
  augfl_state *s = run->alg_state;
  fh_model_load_state(c->model, run->global);
  if (s->fb >= 0 && !fh_run_is_holdout(run, c->id)) {
    int fresh = 1;
    const float *buf = fh_client_store_acquire(run->state, s->fb, c->id, &fresh);
    if (!fresh) memcpy(fh_model_buffers(c->model), buf, s->nb * sizeof(float));
    FH_TRY(fh_client_store_release(run->state, s->fb, c->id, 0));
  }
  fh_rng rng;
  fh_rng_init(&rng, run->seed, FH_RNG_ALGORITHM, (uint32_t)c->id, (uint32_t)c->round);
  return fh_local_sgd_adapt(&s->sgd, c->model, &c->data->train, 1, 0, s->alpha, &rng);
}

/* ---- the server -------------------------------------------------------------------- */

/* The connector's first values: PyTorch's nn.Linear(d, dt) initialisation,
 * U(-1/sqrt(d), 1/sqrt(d)) for weight and bias, from the run's stream
 * (seed, FH_RNG_ALGORITHM, none, 0); every rank draws the same. */
static void connector_init(const fh_run *run, augfl_state *s) {
  fh_rng r;
  fh_rng_init(&r, run->seed, FH_RNG_ALGORITHM, FH_RNG_NONE, 0);
  const double bound = 1.0 / sqrt((double)s->d);
  for (size_t i = 0; i < s->nconn; i++) s->conn[i] = (float)((2.0 * fh_rng_uniform(&r) - 1.0) * bound);
  s->conn_ready[0] = 1.0f;
}

/* The hint term of one chunk of B rows with features f [B, d] and the PM's
 * tf [B, dt]: returns MSE(c(f), tf) (mean over B dt elements, as
 * torch.nn.MSELoss) and writes dfeat [B, d] = a_hint d(MSE)/df and, with a
 * connector c(f) = f Wc^T + bc, its gradient a_hint d(MSE)/d(Wc, bc) into
 * gconn [nconn]. */
static double hint_term(augfl_state *s, const float *f, const float *tf, int B, float *gconn) {
  const size_t ne = (size_t)B * s->dt;
  const float *c = f;
  if (s->conn) {
    fh_linear_forward(s->cf, f, s->conn, s->conn + (size_t)s->dt * s->d, B, s->d, s->dt);
    c = s->cf;
  }
  const double h = fh_mse_forward(c, tf, ne);
  fh_mse_backward(s->dcf, c, tf, ne);
  for (size_t i = 0; i < ne; i++) s->dcf[i] *= s->ahint;
  if (s->conn) {
    memset(gconn, 0, s->nconn * sizeof(float));
    fh_linear_backward(s->dfeat, gconn, gconn + (size_t)s->dt * s->d, s->dcf, f, s->conn, B, s->d, s->dt);
  } else {
    memcpy(s->dfeat, s->dcf, ne * sizeof(float));
  }
  return h;
}

/* The memory rows of CRD's negatives for local server rows [at, at + B): row
 * g's from the stream (seed, FH_RNG_ALGORITHM, 2^31 + g, key), a stream no
 * client id reaches, so the draws do not depend on the rank holding g. key:
 * the pass count for R's pass, 2^31 + (pass S + k) for the heads' step k of S
 * before it (fresh negatives each step, as the authors' loader draws per
 * minibatch; distinct while pass S < 2^31). */
static void crd_draw_chunk(const fh_run *run, augfl_state *s, int at, int B, uint32_t key) {
  const int K = s->crd.K;
  for (int b = 0; b < B; b++) {
    const int64_t g = s->sh.first + at + b;
    fh_rng r;
    fh_rng_init(&r, run->seed, FH_RNG_ALGORITHM, 0x80000000u | (uint32_t)g, key);
    fh_crd_draw(&r, g, s->sh.rows.y[at + b], s->by_class, s->cls_off, s->sh.total, K,
                s->cidx + (size_t)b * (K + 1));
  }
}

/* CRD's first state, on every rank alike: heads and banks drawn once from the
 * stream (seed, FH_RNG_ALGORITHM, none, 1), then Z from the first chunk of
 * shard 0 (rank 0's; the CRD code sets Z at its first minibatch) at theta^t,
 * broadcast. */
static void crd_first_state(fh_run *run, augfl_state *s) {
  if (s->crd_ready[0] == 0.0f) {
    fh_rng r;
    fh_rng_init(&r, run->seed, FH_RNG_ALGORITHM, FH_RNG_NONE, 1);
    fh_crd_init_state(&s->crd, &r);
    s->crd_ready[0] = 1.0f;
  }
  if (s->crd.Z[0] >= 0 && s->crd.Z[1] >= 0) return;
  if (run->rank == 0 && s->sh.s0 == 0 && s->sh.s1 > 0) {
    int rb, re;
    fh_server_shard_rows(&s->sh, 0, &rb, &re);
    const int B = re - rb < s->sbatch ? re - rb : s->sbatch;
    if (B > 0) {
      fh_model_pass_forward(s->pass, s->sh.rows.x + (size_t)rb * run->data->dim, B, s->server_train);
      crd_draw_chunk(run, s, rb, B, (uint32_t)s->crd_pass[0]);
      fh_crd_loss(&s->crd, fh_model_pass_features(s->pass), s->tfeat + (size_t)rb * s->dt, s->cidx, B, 0.0f, NULL,
                  NULL);
    }
  }
  MPI_Bcast(s->crd.Z, 2, MPI_FLOAT, 0, run->comm);
}

/* The heads' own training before g_R (augfl.crd_head_steps = S > 0): with
 * theta^t fixed, the meta-model's features of this rank's rows are taken
 * once (the pass's chunks and BatchNorm mode), then S times: the heads'
 * gradient of a_crd CRD, mean over all server rows (each chunk's draws fresh,
 * the banks and Z fixed), summed in fixed point and all-reduced, and one
 * torch.optim.SGD step (momentum, weight decay) on every rank alike. The
 * momentum starts at zero each round unless augfl.crd_head_carry. Ours: the
 * authors step heads and student together per minibatch of 128 for an
 * epoch; here the student does not move (g_R is taken at theta^t) and a
 * step sees all rows. Collective. */
static int crd_head_steps(fh_run *run, augfl_state *s) {
  const int dim = run->data->dim, S = s->head_steps;
  for (int j = s->sh.s0; j < s->sh.s1; j++) {
    int rb, re;
    fh_server_shard_rows(&s->sh, j, &rb, &re);
    for (int at = rb; at < re; at += s->sbatch) {
      const int B = re - at < s->sbatch ? re - at : s->sbatch;
      fh_model_pass_forward(s->pass, s->sh.rows.x + (size_t)at * dim, B, s->server_train);
      memcpy(s->sfeat + (size_t)at * s->d, fh_model_pass_features(s->pass), (size_t)B * s->d * sizeof(float));
    }
  }
  if (!s->head_carry) {
    memset(s->head_buf, 0, s->nhead * sizeof(float));
    s->head_nsteps[0] = 0;
  }
  long long nsteps = (long long)s->head_nsteps[0];
  double first = 0, last = 0;
  for (int k = 0; k < S; k++) {
    const uint32_t key = 0x80000000u | (uint32_t)((uint64_t)s->crd_pass[0] * (uint64_t)S + (uint64_t)k);
    fh_accum_zero(&s->hacc);
    int rc = 0;
    for (int j = s->sh.s0; j < s->sh.s1 && rc == 0; j++) {
      int rb, re;
      fh_server_shard_rows(&s->sh, j, &rb, &re);
      for (int at = rb; at < re && rc == 0; at += s->sbatch) {
        const int B = re - at < s->sbatch ? re - at : s->sbatch;
        crd_draw_chunk(run, s, at, B, key);
        memset(s->hvec, 0, s->nhead * sizeof(float));
        const double L = fh_crd_loss(&s->crd, s->sfeat + (size_t)at * s->d, s->tfeat + (size_t)at * s->dt, s->cidx,
                                     B, s->acrd, NULL, s->hvec);
        if (!isfinite(L)) {
          rc = FH_FAIL(FH_ERR_DIVERGED, "CRD became %s in the heads' step %d; lower augfl.crd_head_lr",
                       isnan(L) ? "NaN" : "infinite", k + 1);
          break;
        }
        s->hvec[s->nhead] = (float)L;
        rc = fh_accum_add(&s->hacc, s->hvec, (double)B); /* B x the chunk's means */
      }
    }
    FH_TRY(fh_error_agree(run->comm, rc));
    fh_accum_allreduce(&s->hacc, run->comm);
    const double rows = fh_accum_weight(&s->hacc);
    for (size_t i = 0; i <= s->nhead; i++) s->hvec[i] = (float)((double)s->hacc.sum[i] / s->hacc.scale / rows);
    if (k == 0) first = s->hvec[s->nhead];
    last = s->hvec[s->nhead];
    fh_sgd_step(&s->head_opt, s->crd.head, s->hvec, s->head_buf, s->nhead, &nsteps);
  }
  s->head_nsteps[0] = (double)nsteps;
  if (s->crd_pass[0] == 0)
    fh_info("augfl: CRD heads, round 1: CRD %.4f before their first step, %.4f before their last", first, last);
  return 0;
}

/* After the pass: the heads' SGD step on R's CRD term (every rank, from the
 * all-reduced sums) and the banks' momentum step of every row from this
 * pass's embeddings, each rank its rows, gathered whole on every rank. */
static void crd_step(fh_run *run, augfl_state *s, double rows) {
  const size_t off = s->np + s->nconn;
  for (size_t i = 0; i < s->nhead; i++)
    s->crd.head[i] = (float)((double)s->crd.head[i] -
                             (double)s->crd_lr * ((double)s->racc.sum[off + i] / s->racc.scale / rows));
  const int n = s->sh.rows.n;
  fh_crd_memory_rows(&s->crd, s->crd.mem_s, s->vs_all, s->sh.first, n, s->vs_all);
  fh_crd_memory_rows(&s->crd, s->crd.mem_t, s->vt_all, s->sh.first, n, s->vt_all);
  MPI_Allgatherv(s->vs_all, n * s->crd.D, MPI_FLOAT, s->crd.mem_s, s->rcount, s->rdispl, MPI_FLOAT, run->comm);
  MPI_Allgatherv(s->vt_all, n * s->crd.D, MPI_FLOAT, s->crd.mem_t, s->rcount, s->rdispl, MPI_FLOAT, run->comm);
  s->crd_pass[0] += 1;
}

/* g_R = grad R(theta^t) over this rank's shards, summed in fixed point and
 * reduced to rank 0 (to every rank with a learnable connector, which every
 * rank then steps alike); with the second-order step also the distributed
 * solve (the classifier's from each row's features and probabilities, the
 * whole model's from the rows' inputs). Every rank. */
static int augfl_server_collective(fh_run *run, const fh_accum *acc) {
  augfl_state *s = run->alg_state;
  if (!s->server) return 0;
  const int C = s->O /* the logits */, dim = run->data->dim, w = s->d + 2 * C;
  const size_t nv = s->np + s->nconn + s->nhead;
  fh_model *m = run->model;
  fh_model_load_state(m, run->global); /* theta^t */
  if (s->conn && s->conn_ready[0] == 0.0f) connector_init(run, s);
  if (s->nhead) crd_first_state(run, s);
  if (s->nhead && s->head_steps > 0) FH_TRY(crd_head_steps(run, s));
  fh_accum_zero(&s->racc);
  int rc = 0;
  for (int j = s->sh.s0; j < s->sh.s1 && rc == 0; j++) {
    int rb, re;
    fh_server_shard_rows(&s->sh, j, &rb, &re);
    for (int at = rb; at < re && rc == 0; at += s->sbatch) {
      const int B = re - at < s->sbatch ? re - at : s->sbatch;
      const float *x = s->sh.rows.x + (size_t)at * dim;
      const float *z = fh_model_pass_forward(s->pass, x, B, s->server_train);
      const double ce = fh_softmax_ce_forward(s->pce, z, s->sh.rows.y + at, B, C);
      fh_softmax_ce_backward(s->dce, s->pce, s->sh.rows.y + at, B, C);
      double kd = 0.0; /* a PM of other logits (pm.outputs) comes with a_kd = 0 and the linearised step */
      if (s->OT == C) {
        kd = fh_kd_loss_forward(s->ps, s->pt, z, s->teacher + (size_t)at * C, B, C, s->T);
        fh_kd_loss_backward(s->dkd, s->ps, s->pt, B, C, s->T);
      } else {
        memset(s->dkd, 0, (size_t)B * C * sizeof(float));
      }
      const float *f = fh_model_pass_features(s->pass);
      if (s->second && !s->block_all) { /* f | softmax(z) | softmax(z / T) of each row */
        for (int b = 0; b < B; b++) {
          float *row = s->gnrows + (size_t)(at + b) * w;
          memcpy(row, f + (size_t)b * s->d, (size_t)s->d * sizeof(float));
          memcpy(row + s->d, s->pce + (size_t)b * C, (size_t)C * sizeof(float));
          memcpy(row + s->d + C, s->ps + (size_t)b * C, (size_t)C * sizeof(float));
        }
      }
      const double hint = s->ahint > 0 ? hint_term(s, f, s->tfeat + (size_t)at * s->dt, B, s->vec + s->np) : 0.0;
      const float *dfeat = s->ahint > 0 ? s->dfeat : NULL;
      double crd = 0.0;
      if (s->nhead) { /* a_crd CRD: its feature gradient joins the hint's; the heads' into vec */
        const int D = s->crd.D;
        float *gh = s->vec + s->np + s->nconn;
        memset(gh, 0, s->nhead * sizeof(float));
        crd_draw_chunk(run, s, at, B, (uint32_t)s->crd_pass[0]);
        crd = fh_crd_loss(&s->crd, f, s->tfeat + (size_t)at * s->dt, s->cidx, B, s->acrd, s->dfs, gh);
        memcpy(s->vs_all + (size_t)at * D, s->crd.vs, (size_t)B * D * sizeof(float));
        memcpy(s->vt_all + (size_t)at * D, s->crd.vt, (size_t)B * D * sizeof(float));
        if (dfeat)
          for (int i = 0; i < B * s->d; i++) s->dfeat[i] += s->dfs[i];
        else
          dfeat = s->dfs;
      }
      for (int i = 0; i < B * C; i++) s->dce[i] = s->gamma * s->dce[i] + s->akd * s->dkd[i];
      fh_model_pass_backward(s->pass, x, s->dce, dfeat, B);
      fh_prof_count_flops(fh_model_flops_forward(m, B) + fh_model_flops_backward(m, B));
      const double r = s->gamma * ce + s->akd * kd + s->ahint * hint + s->acrd * crd;
      if (!isfinite(r)) {
        rc = FH_FAIL(FH_ERR_DIVERGED, "the regulariser R became %s at the server; lower augfl.lambda or raise "
                                      "augfl.rho", isnan(r) ? "NaN" : "infinite");
        break;
      }
      memcpy(s->vec, fh_model_grads(m), s->np * sizeof(float));
      s->vec[nv] = (float)r;
      rc = fh_accum_add(&s->racc, s->vec, (double)B); /* B x the chunk's means */
    }
  }
  FH_TRY(fh_error_agree(run->comm, rc));
  if (s->conn || s->nhead)
    fh_accum_allreduce(&s->racc, run->comm);
  else
    fh_accum_reduce(&s->racc, 0, run->comm);
  const double rows = fh_accum_weight(&s->racc);
  if (run->rank == 0) {
    for (size_t i = 0; i < s->np; i++) s->gR[i] = (float)((double)s->racc.sum[i] / s->racc.scale / rows);
    s->Rval = (double)s->racc.sum[nv] / s->racc.scale / rows;
  }
  /* the connector's SGD step on R's hint term, on every rank alike (after g_R
   * was taken at the connector of round t, as one optimiser step moves both) */
  for (size_t i = 0; i < s->nconn; i++)
    s->conn[i] = (float)((double)s->conn[i] -
                         (double)s->hint_lr * ((double)s->racc.sum[s->np + i] / s->racc.scale / rows));
  if (s->nhead) crd_step(run, s, rows);
  if (!s->second) return 0;
  /* (N rho I + lambda H) Delta = sum u - N rho theta^t - lambda g_R over the block */
  const double nrho = (double)s->N * s->rho;
  if (run->rank == 0)
    for (int i = 0; i < s->nh; i++) {
      const size_t p = s->head_off + (size_t)i;
      s->delta[i] = (double)acc->sum[p] / acc->scale - nrho * run->global[p] - (double)s->lambda * s->gR[p];
    }
  const double Ns = (double)s->sh.total;
  if (s->block_all) {
    return fh_gn_model_solve(s->gn, s->sh.rows.n, s->sh.rows.x, sqrt(s->gamma / Ns), sqrt(s->akd / Ns), nrho,
                             (double)s->lambda, s->delta);
  }
  return fh_gn_head_solve(s->gn, s->sh.rows.n, s->gnrows, sqrt(s->gamma / Ns), sqrt(s->akd / Ns), nrho,
                          (double)s->lambda, s->delta);
}

/* Rank 0: theta^{t+1} = (sum u_i - lambda g_R) / (N rho); the classifier
 * theta^t + Delta with the second-order step; buffers the sources' mean
 * (augfl.bn_buffers = averaged) or unchanged (local). */
static int augfl_server_step(fh_run *run, const fh_accum *acc) {
  augfl_state *s = run->alg_state;
  const double nrho = (double)s->N * s->rho, inv = 1.0 / acc->scale;
  float *g = run->global;
  for (size_t i = 0; i < s->np; i++) {
    if (s->second && i >= s->head_off) {
      g[i] = (float)((double)g[i] + s->delta[i - s->head_off]);
      continue;
    }
    const double reg = s->server ? (double)s->lambda * s->gR[i] : 0.0;
    g[i] = (float)(((double)acc->sum[i] * inv - reg) / nrho);
  }
  if (!s->bn_local) /* local: the global model's statistics stay where they started */
    for (size_t i = s->np; i < run->model_n; i++) g[i] = (float)((double)acc->sum[i] * inv / s->N);
  return 0;
}

static void augfl_destroy(fh_run *run) {
  augfl_state *s = run->alg_state;
  fh_perfedavg_step_destroy(&s->step);
  fh_local_sgd_destroy(&s->sgd);
  free(s->ghat);
  free(s->contrib);
  free(s->idx_tr);
  free(s->idx_te);
  if (s->server) {
    fh_server_shards_free(&s->sh);
    fh_model_pass_free(s->pass);
    fh_accum_destroy(&s->racc);
  }
  free(s->teacher);
  free(s->vec);
  free(s->dce);
  free(s->dkd);
  free(s->pce);
  free(s->ps);
  free(s->pt);
  free(s->gR);
  fh_gn_head_free(s->gn);
  free(s->gnrows);
  free(s->delta);
  free(s->tfeat);
  free(s->cf);
  free(s->dcf);
  free(s->dfeat);
  if (s->nhead) fh_crd_free(&s->crd);
  free(s->by_class);
  free(s->cls_off);
  free(s->rcount);
  free(s->rdispl);
  free(s->cidx);
  free(s->dfs);
  free(s->vs_all);
  free(s->vt_all);
  if (s->sfeat) fh_accum_destroy(&s->hacc);
  free(s->sfeat);
  free(s->hvec);
  free(s);
  run->alg_state = NULL;
}

/* Tests: the ADMM needs every client in every round, and the synthetic deck
 * has no server rows for a pretrained model (augfl.lambda = 0); minibatch
 * client steps keep the signal test short. */
static const fh_test_case augfl_tests[] = {
    {"augfl", FH_TEST_RESUME | FH_TEST_DECK, "run.client_fraction=1 augfl.lambda=0 augfl.rho=1.5 augfl.batch=16", "", NULL},
    {NULL, 0, NULL, NULL, NULL}};

const fh_algorithm fh_alg_augfl = {
    .name = "augfl",
    .summary = "AugFL: federated meta-learning by inexact ADMM with the server's pretrained model as a "
               "regulariser (augfl.lambda = 0: ADMM-FedMeta)",
    .keys = augfl_keys,
    .setup = augfl_setup,
    .client_update = augfl_client_update,
    .server_step = augfl_server_step,
    .server_collective = augfl_server_collective,
    .destroy = augfl_destroy,
    .client_model = augfl_client_model,
    .tests = augfl_tests,
};

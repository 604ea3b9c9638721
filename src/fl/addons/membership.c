/* Membership inference on the final global model (fedgc.membership; see
 * membership.h). */
#include "fl/addons/membership.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "fl/payload.h"
#include "io/h5util.h"

/* ---- membership inference ---------------------------------------------------------- */

typedef struct {
  double v;
  int member;
} scored;

static int cmp_scored(const void *a, const void *b) {
  const scored *x = a, *y = b;
  return (x->v > y->v) - (x->v < y->v);
}

double fh_fedgc_auc(const double *loss, long long nm, long long nn) {
  if (nm <= 0 || nn <= 0) return NAN;
  const long long n = nm + nn;
  scored *s = fh_malloc((size_t)n * sizeof *s);
  for (long long i = 0; i < n; i++) s[i] = (scored){loss[i], i < nm};
  qsort(s, (size_t)n, sizeof *s, cmp_scored);
  /* rank sum of the non-members, ties at their average rank (1-based) */
  double rsum = 0;
  for (long long i = 0; i < n;) {
    long long j = i;
    while (j < n && s[j].v == s[i].v) j++;
    const double avg = 0.5 * (double)(i + 1 + j);
    for (long long t = i; t < j; t++)
      if (!s[t].member) rsum += avg;
    i = j;
  }
  free(s);
  return (rsum - 0.5 * (double)nn * (double)(nn + 1)) / ((double)nm * (double)nn);
}

/* Per-row cross-entropy of the model on rows [0, n) of sp into loss, and the
 * number of right argmax predictions. */
static double split_losses(fh_model *m, const fh_split *sp, int n, double *loss) {
  const int B = fh_model_max_batch(m), C = fh_model_num_classes(m), d = (int)fh_model_input_size(m);
  double correct = 0;
  for (int b = 0; b < n; b += B) {
    const int nb = n - b < B ? n - b : B;
    const float *z = fh_model_forward(m, sp->x + (size_t)b * d, nb, 0);
    for (int i = 0; i < nb; i++) {
      const float *zi = z + (size_t)i * C;
      int best = 0;
      double mx = zi[0], s = 0;
      for (int c = 1; c < C; c++)
        if (zi[c] > mx) mx = zi[c], best = c;
      for (int c = 0; c < C; c++) s += exp((double)zi[c] - mx);
      loss[b + i] = mx + log(s) - zi[sp->y[b + i]];
      correct += best == sp->y[b + i];
    }
  }
  return correct;
}

/* Rank 0: the attack's AUC and the means from all losses [members |
 * non-members] (tot: their counts and the generated rows; right: the right
 * predictions of each) to run_dir/membership.h5, and one line. */
static int write_score(const double *all, const long long *tot, const double *right, const char *run_dir) {
  int rc = 0;
  const double auc = fh_fedgc_auc(all, tot[0], tot[1]);
  double mm = 0, mn = 0;
  for (long long i = 0; i < tot[0]; i++) mm += all[i];
  for (long long i = 0; i < tot[1]; i++) mn += all[tot[0] + i];
  mm = tot[0] ? mm / (double)tot[0] : NAN, mn = tot[1] ? mn / (double)tot[1] : NAN;
  const double am = tot[0] ? right[0] / (double)tot[0] : NAN, an = tot[1] ? right[1] / (double)tot[1] : NAN;
  char path[4200];
  snprintf(path, sizeof path, "%s/membership.h5", run_dir);
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot create; set output.dir to a writable directory", path);
  rc = fh_h5_attr_double(f, "auc", auc);
  if (rc == 0) rc = fh_h5_attr_int(f, "members", tot[0]);
  if (rc == 0) rc = fh_h5_attr_int(f, "nonmembers", tot[1]);
  if (rc == 0) rc = fh_h5_attr_int(f, "generated_rows", tot[2]);
  if (rc == 0) rc = fh_h5_attr_double(f, "member_loss", mm);
  if (rc == 0) rc = fh_h5_attr_double(f, "nonmember_loss", mn);
  if (rc == 0) rc = fh_h5_attr_double(f, "member_accuracy", am);
  if (rc == 0) rc = fh_h5_attr_double(f, "nonmember_accuracy", an);
  if (rc == 0)
    rc = fh_h5_attr_str(f, "attack", "loss threshold: lower cross-entropy of the final global model = member; "
                                     "members = clients' real train rows, non-members = clients' test rows");
  if (H5Fclose(f) < 0 && rc == 0) rc = FH_FAIL(FH_ERR_OUTPUT, "%s: cannot write", path);
  if (rc == 0)
    fh_info("membership inference (loss threshold): AUC %.4f over %lld members / %lld non-members (mean loss "
            "%.4f / %.4f, accuracy %.2f%% / %.2f%%; %lld generated rows in training) -> %s",
            auc, tot[0], tot[1], mm, mn, 100 * am, 100 * an, tot[2], path);
  return rc;
}

static int membership_enabled(const fh_config *cfg) { return fh_cfg_bool(cfg, "fedgc.membership"); }

int fh_fedgc_membership(fh_run *run, const char *run_dir) {
  if (run->alg->flags & (FH_ALG_NO_GLOBAL | FH_ALG_NO_GLOBAL_MODEL)) {
    fh_warn("fedgc.membership: %s has no global model of the data; no membership-inference score",
            run->alg->name);
    return 0;
  }
  const size_t chunk = (size_t)1 << 28;
  for (size_t off = 0; off < run->payload_n; off += chunk)
    MPI_Bcast(run->global + off, (int)(run->payload_n - off < chunk ? run->payload_n - off : chunk), MPI_FLOAT, 0,
              run->comm);
  /* The model the run reports as global (FedKD: its student, not the message). */
  const float *g = run->alg->global_model ? run->alg->global_model(run) : run->global;
  FH_TRY(fh_error_agree(run->comm, g ? 0 : FH_ERR_RUNTIME));
  fh_model_load_state(run->model, g);
  const fh_dataset *ds = run->data;
  long long cnt[3] = {0, 0, 0}; /* members, non-members, generated rows */
  for (int i = 0; i < run->nlocal; i++) {
    cnt[0] += ds->clients[i].train.n - ds->clients[i].train.generated;
    cnt[1] += ds->clients[i].test.n;
    cnt[2] += ds->clients[i].train.generated;
  }
  int rc = 0;
  if (cnt[0] > 0x7fffffffLL || cnt[1] > 0x7fffffffLL)
    rc = FH_FAIL(FH_ERR_RUNTIME, "fedgc.membership: a rank holds more than 2^31 rows; use more ranks");
  FH_TRY(fh_error_agree(run->comm, rc)); /* before any collective below */
  double *lm = fh_malloc((size_t)(cnt[0] + 1) * sizeof(double)), *ln = fh_malloc((size_t)(cnt[1] + 1) * sizeof(double));
  double right[2] = {0, 0};
  for (int i = 0, am = 0, an = 0; i < run->nlocal; i++) {
    const fh_client_data *cd = &ds->clients[i];
    const int nreal = cd->train.n - cd->train.generated;
    right[0] += split_losses(run->model, &cd->train, nreal, lm + am);
    right[1] += split_losses(run->model, &cd->test, cd->test.n, ln + an);
    am += nreal, an += cd->test.n;
  }
  long long tot[3];
  MPI_Allreduce(cnt, tot, 3, MPI_LONG_LONG, MPI_SUM, run->comm);
  MPI_Allreduce(MPI_IN_PLACE, right, 2, MPI_DOUBLE, MPI_SUM, run->comm);
  if (tot[0] + tot[1] > 0x7fffffffLL)
    rc = FH_FAIL(FH_ERR_RUNTIME, "fedgc.membership: %lld rows to score, more than 2^31", tot[0] + tot[1]);
  FH_TRY(fh_error_agree(run->comm, rc));
  /* all losses to rank 0: members, then non-members, each in client order */
  const int root = run->rank == 0;
  double *all = root ? fh_malloc((size_t)(tot[0] + tot[1] + 1) * sizeof(double)) : NULL;
  int *counts = root ? fh_malloc((size_t)run->nranks * sizeof(int)) : NULL;
  int *displs = root ? fh_malloc((size_t)run->nranks * sizeof(int)) : NULL;
  for (int part = 0; part < 2; part++) {
    const int mine = (int)cnt[part];
    MPI_Gather(&mine, 1, MPI_INT, counts, 1, MPI_INT, 0, run->comm);
    if (root)
      for (int r = 0, at = part ? (int)tot[0] : 0; r < run->nranks; at += counts[r++]) displs[r] = at;
    MPI_Gatherv(part ? ln : lm, mine, MPI_DOUBLE, all, counts, displs, MPI_DOUBLE, 0, run->comm);
  }
  if (root) rc = write_score(all, tot, right, run_dir);
  free(all), free(counts), free(displs), free(lm), free(ln);
  return fh_error_agree(run->comm, rc);
}

static int membership_finish(fh_run *run, void *state, const char *run_dir) {
  (void)state;
  return fh_fedgc_membership(run, run_dir);
}

const fh_addon fh_addon_membership = {
    .name = "membership",
    .summary = "loss-threshold membership-inference attack on the final global model (fedgc.membership)",
    .keys = NULL, /* fedgc.membership, in FedGC's section */
    .enabled = membership_enabled,
    .finish = membership_finish,
};

/* LIPS's inertia record (lips.record_inertia; docs/lips.md): per recorded
 * layer and round, the global model's cosine and distance to its round-3
 * snapshot, its update norm, and the clients' gradient norm and diversity.
 * Rank 0 keeps the rows in memory and rewrites RUN/inertia.h5 after every
 * round; a resumed run reads its rows back from that file. */
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"
#include "fl/addons/lips.h"
#include "fl/addons/lips_impl.h"
#include "fl/client_state.h"
#include "io/h5util.h"
#include "nn/model.h"

/* inertia.h5 metrics, per round and layer */
enum { M_COS, M_DIST, M_UPDATE, M_GNORM, M_GDIV, NMET };
static const char *const met_names[NMET] = {"cos_to_snapshot", "dist_to_snapshot", "update_norm",
                                            "grad_norm", "grad_diversity"};
/* the reference snapshot: the global model after 0-based round 2 (metrics
 * row 3), as the authors' train_round == 2 */
#define SNAPSHOT_ROUND 2

void fh_lips_inertia_setup(fh_run *run, struct fh_lips *L) {
  const fh_config *cfg = run->cfg;
  fh_model *m = run->model;
  const int mmax = fh_run_sampled_count(run); /* contributions per sum: the round's clients */
  L->snap = fh_run_server_state(run, "lips.snapshot", fh_model_nparams(m));
  if (run->rank == 0) L->prev = fh_malloc(fh_model_nparams(m) * sizeof(float));
  fh_accum_create(&L->gacc, L->glen, (int)fh_cfg_int(cfg, "run.accum_bits"), (int)mmax);
  L->gdec = fh_malloc(L->glen * sizeof(float));
  /* at most the round's sampled clients train here (any of them under
   * run.schedule = balanced, src/fl/schedule.h) */
  L->traced = fh_malloc((size_t)mmax * sizeof(int));
  L->R = run->rounds;
  if (run->rank == 0) {
    L->rows = fh_malloc((size_t)L->R * L->nl * NMET * sizeof(double));
    L->density = fh_malloc((size_t)L->R * sizeof(double));
    for (size_t i = 0; i < (size_t)L->R * L->nl * NMET; i++) L->rows[i] = NAN;
    for (int i = 0; i < L->R; i++) L->density[i] = NAN;
  }
}

static int write_inertia(const fh_run *run, const struct fh_lips *L, int nrows, const char *run_dir) {
  char path[4200], tmp[4300];
  snprintf(path, sizeof path, "%s/inertia.h5", run_dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot create; set output.dir to a writable directory", tmp);
  int rc = 0;
  const fh_model *m = run->model;
  const int nl = L->nl;
  hid_t st = H5Tcopy(H5T_C_S1);
  H5Tset_size(st, sizeof(((fh_param_view *)0)->name));
  char(*names)[sizeof(((fh_param_view *)0)->name)] = fh_calloc((size_t)nl, sizeof *names);
  int32_t *mid = fh_malloc((size_t)nl * sizeof *mid), *rnd = fh_malloc((size_t)(nrows ? nrows : 1) * sizeof *rnd);
  int64_t *numel = fh_malloc((size_t)nl * sizeof *numel);
  for (int l = 0; l < nl; l++) {
    const fh_param_view *pv = fh_model_view(m, L->view[l]);
    snprintf(names[l], sizeof names[l], "%s", pv->name);
    mid[l] = L->middle[l];
    numel[l] = (int64_t)pv->numel;
  }
  for (int r = 0; r < nrows; r++) rnd[r] = r + 1;
  hsize_t d1 = (hsize_t)nl, dr = (hsize_t)nrows, d2[2] = {(hsize_t)nrows, (hsize_t)nl};
  if (fh_h5_write(f, "layers", st, 1, &d1, names) || fh_h5_write(f, "middle", H5T_NATIVE_INT32, 1, &d1, mid) ||
      fh_h5_write(f, "numel", H5T_NATIVE_INT64, 1, &d1, numel) ||
      fh_h5_write(f, "round", H5T_NATIVE_INT32, 1, &dr, rnd) ||
      fh_h5_write(f, "density", H5T_NATIVE_DOUBLE, 1, &dr, L->density))
    rc = FH_FAIL(FH_ERR_OUTPUT, "%s: cannot write", tmp);
  double *col = fh_malloc((size_t)(nrows ? nrows : 1) * nl * sizeof *col);
  for (int k = 0; k < NMET && rc == 0; k++) {
    for (int r = 0; r < nrows; r++)
      for (int l = 0; l < nl; l++) col[(size_t)r * nl + l] = L->rows[((size_t)r * nl + l) * NMET + k];
    if (fh_h5_write(f, met_names[k], H5T_NATIVE_DOUBLE, 2, d2, col))
      rc = FH_FAIL(FH_ERR_OUTPUT, "%s: cannot write %s", tmp, met_names[k]);
  }
  if (rc == 0 &&
      (fh_h5_attr_str(f, "algorithm", run->alg->name) || fh_h5_attr_int(f, "lips_enable", L->enabled) ||
       fh_h5_attr_double(f, "lips_d0", L->d0) || fh_h5_attr_int(f, "lips_every", L->every) ||
       fh_h5_attr_int(f, "lips_T", L->T) || fh_h5_attr_int(f, "snapshot_round", SNAPSHOT_ROUND + 1) ||
       fh_h5_attr_str(f, "model", fh_model_arch(m))))
    rc = FH_FAIL(FH_ERR_OUTPUT, "%s: cannot write its attributes", tmp);
  free(col);
  free(names);
  free(mid);
  free(rnd);
  free(numel);
  H5Tclose(st);
  if (H5Fclose(f) < 0 && rc == 0) rc = FH_FAIL(FH_ERR_OUTPUT, "%s: cannot close", tmp);
  if (rc == 0 && rename(tmp, path) != 0)
    rc = FH_FAIL(FH_ERR_OUTPUT, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
  if (rc) remove(tmp);
  return rc;
}

/* Rank 0 of a resumed run: rows [0, start) back from RUN/inertia.h5. */
static void read_inertia(struct fh_lips *L, int start, const char *run_dir) {
  char path[4200];
  snprintf(path, sizeof path, "%s/inertia.h5", run_dir);
  fh_h5_quiet q;
  fh_h5_quiet_begin(&q);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  int got = 0;
  if (f >= 0) {
    double *col = fh_malloc((size_t)start * L->nl * sizeof *col + 1);
    got = 1;
    for (int k = -1; k < NMET && got; k++) {
      hid_t d = H5Dopen2(f, k < 0 ? "density" : met_names[k], H5P_DEFAULT);
      hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
      hsize_t dims[2] = {0, 0};
      int nd = sp >= 0 ? H5Sget_simple_extent_dims(sp, dims, NULL) : -1;
      got = nd == (k < 0 ? 1 : 2) && dims[0] >= (hsize_t)start && (k < 0 || dims[1] == (hsize_t)L->nl);
      if (got && start > 0) {
        hsize_t off[2] = {0, 0}, cnt[2] = {(hsize_t)start, (hsize_t)L->nl};
        H5Sselect_hyperslab(sp, H5S_SELECT_SET, off, NULL, cnt, NULL);
        hid_t ms = H5Screate_simple(nd, cnt, NULL);
        got = H5Dread(d, H5T_NATIVE_DOUBLE, ms, sp, H5P_DEFAULT, k < 0 ? L->density : col) >= 0;
        H5Sclose(ms);
        if (got && k >= 0)
          for (int r = 0; r < start; r++)
            for (int l = 0; l < L->nl; l++) L->rows[((size_t)r * L->nl + l) * NMET + k] = col[(size_t)r * L->nl + l];
      }
      if (sp >= 0) H5Sclose(sp);
      if (d >= 0) H5Dclose(d);
    }
    free(col);
    H5Fclose(f);
  }
  fh_h5_quiet_end(&q);
  if (!got)
    fh_warn("lips.record_inertia: %s does not hold the %d rounds before the checkpoint; they stay NaN", path, start);
}

int fh_lips_inertia_round_begin(fh_run *run, void *state, int t, const char *run_dir) {
  struct fh_lips *L = state;
  if (!L->inertia) return 0;
  if (!L->begun) {
    L->begun = 1;
    if (run->rank == 0) {
      if (t > 0) {
        read_inertia(L, t, run_dir);
      } else {
        char path[4200];
        snprintf(path, sizeof path, "%s/inertia.h5", run_dir);
        if (remove(path) != 0 && errno != ENOENT)
          return FH_FAIL(FH_ERR_OUTPUT, "%s: cannot remove an earlier run's file: %s", path, strerror(errno));
      }
    }
  }
  L->ntraced = 0;
  fh_accum_zero(&L->gacc);
  if (run->rank == 0) memcpy(L->prev, run->global, fh_model_nparams(run->model) * sizeof(float));
  return 0;
}

int fh_lips_inertia_round_end(fh_run *run, void *state, int t, const int *sampled, int m, const char *run_dir) {
  struct fh_lips *L = state;
  if (!L->inertia) return 0;
  const int nl = L->nl;
  /* clients' gradients: the mean (fixed point, every rank), then each traced
   * client's per-layer norm and distance from it in its slot of [m][2 nl + 1] */
  fh_accum_allreduce(&L->gacc, run->comm);
  const double count = fh_accum_weight(&L->gacc);
  if (count > 0) fh_accum_mean(&L->gacc, L->gdec);
  const size_t w = (size_t)2 * nl + 1;
  double *slots = fh_calloc((size_t)m * w, sizeof *slots);
  int rc = 0;
  for (int i = 0; i < L->ntraced && rc == 0 && count > 0; i++) {
    const int j = fh_sorted_index(sampled, m, L->traced[i]);
    if (j < 0) continue;
    const uint16_t *g = fh_client_store_acquire(run->state, L->f_grad, L->traced[i], NULL);
    double *s = slots + (size_t)j * w;
    for (int l = 0; l < nl; l++) {
      const size_t n = fh_model_view(run->model, L->view[l])->numel, o = L->goff[l];
      double nn = 0, dd = 0;
      for (size_t e = 0; e < n; e++) {
        const double x = fh_f16_to_f32(g[o + e]), dx = x - L->gdec[o + e];
        nn += x * x;
        dd += dx * dx;
      }
      s[l] = sqrt(nn);
      s[nl + l] = sqrt(dd);
    }
    s[2 * nl] = 1;
    rc = fh_client_store_release(run->state, L->f_grad, L->traced[i], 0);
  }
  MPI_Reduce(run->rank == 0 ? MPI_IN_PLACE : slots, slots, (int)((size_t)m * w), MPI_DOUBLE, MPI_SUM, 0, run->comm);
  if (run->rank == 0 && t < L->R) {
    const float *g = run->global;
    const size_t np = fh_model_nparams(run->model);
    if (t == SNAPSHOT_ROUND) memcpy(L->snap, g, np * sizeof(float));
    double *row = L->rows + (size_t)t * nl * NMET;
    for (int l = 0; l < nl; l++) {
      const fh_param_view *pv = fh_model_view(run->model, L->view[l]);
      const float *x = g + pv->offset, *s = L->snap + pv->offset, *p = L->prev + pv->offset;
      double xs = 0, xx = 0, ss = 0, ds = 0, dp = 0;
      for (size_t e = 0; e < pv->numel; e++) {
        xs += (double)x[e] * s[e], xx += (double)x[e] * x[e], ss += (double)s[e] * s[e];
        ds += ((double)x[e] - s[e]) * ((double)x[e] - s[e]);
        dp += ((double)x[e] - p[e]) * ((double)x[e] - p[e]);
      }
      double *r = row + (size_t)l * NMET;
      r[M_COS] = t >= SNAPSHOT_ROUND && xx > 0 && ss > 0 ? xs / sqrt(xx * ss) : NAN;
      r[M_DIST] = t >= SNAPSHOT_ROUND ? sqrt(ds) : NAN;
      r[M_UPDATE] = sqrt(dp);
      double gn = 0, gd = 0, nc = 0;
      for (int j = 0; j < m; j++) {
        const double *sj = slots + (size_t)j * w;
        if (sj[2 * nl] == 0) continue;
        gn += sj[l], gd += sj[nl + l], nc++;
      }
      r[M_GNORM] = nc > 0 ? gn / nc : NAN;
      r[M_GDIV] = nc > 0 ? gd / nc : NAN;
    }
    L->density[t] = L->enabled ? fh_lips_density(t, L->d0, L->every, L->T) : 1.0;
    if (rc == 0) rc = write_inertia(run, L, t + 1, run_dir);
  }
  free(slots);
  return rc;
}

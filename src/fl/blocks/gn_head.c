/* The classifier's Gauss-Newton system on the BLACS grid (see gn_head.h). */
#include "fl/blocks/gn_head.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "linalg/distmatrix.h"
#include "linalg/gram.h"
#include "linalg/grid.h"
#include "linalg/solve.h"
#include "nn/model.h"

struct fh_gn_head {
  MPI_Comm comm, row_comm; /* row_comm: the ranks of this rank's process row */
  fh_grid *grid;
  int d, C, chunk, n; /* n unknowns: C (d + 1) for the classifier */
  int width;          /* floats per sample: d + 2C (classifier), the input (model) */
  /* the whole model (fh_gn_model_create) */
  fh_model_pass *pass;
  double T;
  float *jz;          /* [C, local columns of J]: dz_c / dtheta_j of one sample */
};

static int create(fh_gn_head **out, MPI_Comm comm, int n, int C, int chunk, int width) {
  *out = NULL;
  fh_gn_head *g = fh_calloc(1, sizeof *g);
  g->comm = comm;
  g->C = C, g->chunk = chunk;
  g->n = n;
  g->width = width;
  int rc = fh_grid_create(comm, 0, &g->grid);
  if (rc) {
    free(g);
    return rc;
  }
  MPI_Comm_split(comm, g->grid->myrow, g->grid->mycol, &g->row_comm);
  *out = g;
  return 0;
}

int fh_gn_head_create(fh_gn_head **out, MPI_Comm comm, int d, int C, int chunk) {
  FH_TRY(create(out, comm, C * (d + 1), C, chunk, d + 2 * C));
  (*out)->d = d;
  return 0;
}

int fh_gn_model_create(fh_gn_head **out, MPI_Comm comm, fh_model_pass *pass, int n, int dim, int C, double T,
                       int chunk) {
  if (C > FH_GN_MAX_CLASSES)
    return FH_FAIL(FH_ERR_CONFIG, "second-order step over the whole model: %d classes, more than %d", C,
                   FH_GN_MAX_CLASSES);
  FH_TRY(create(out, comm, n, C, chunk, dim));
  (*out)->pass = pass;
  (*out)->T = T;
  return 0;
}

void fh_gn_head_free(fh_gn_head *g) {
  if (!g) return;
  MPI_Comm_free(&g->row_comm);
  fh_grid_destroy(g->grid);
  free(g->jz);
  free(g);
}

int fh_gn_head_size(const fh_gn_head *g) { return g->n; }

/* This rank's entries of one chunk of J: process row pr holds rows
 * [pr mb, (pr + 1) mb) (one row block), row r of them is term t = r mod 2C of
 * sample first + r / 2C of the process row's samples (zero past the last);
 * column j is W[c, jj] (j = c d + jj) or b[c] (j = C d + c). Per row the C
 * coefficients first, then each column is a product. */
static void fill_chunk(fh_distmatrix *J, const fh_gn_head *g, const float *rows, int nrow, int first, double cp,
                       double cq, double *coef, int *col_c, int *col_j) {
  const int C = g->C, d = g->d, mb = J->mb;
  for (int lj = 0; lj < J->local_cols; lj++) {
    const int j = fh_distmatrix_global_col(J, lj);
    col_c[lj] = j < C * d ? j / d : j - C * d;
    col_j[lj] = j < C * d ? j % d : -1; /* -1: the bias, factor 1 */
  }
  for (int li = 0; li < J->local_rows; li++) {
    const int r = fh_distmatrix_global_row(J, li) % mb;
    const int s = first + r / (2 * C), t = r % (2 * C);
    double *cf = coef + (size_t)li * C;
    if (s >= nrow) { /* padding: zero rows add nothing */
      memset(cf, 0, (size_t)C * sizeof(double));
      continue;
    }
    const float *pr = rows + (size_t)s * g->width + d + (t < C ? 0 : C); /* p or q */
    const int k = t < C ? t : t - C;
    const double scale = (t < C ? cp : cq) * sqrt((double)pr[k]);
    for (int c = 0; c < C; c++) cf[c] = scale * ((c == k ? 1.0 : 0.0) - (double)pr[c]);
  }
  for (int lj = 0; lj < J->local_cols; lj++) {
    double *col = J->local + (size_t)lj * J->lld;
    const int c = col_c[lj], jj = col_j[lj];
    for (int li = 0; li < J->local_rows; li++) {
      const int r = fh_distmatrix_global_row(J, li) % mb, s = first + r / (2 * C);
      const double fx = s >= nrow || jj < 0 ? 1.0 : (double)rows[(size_t)s * g->width + jj];
      col[li] = coef[(size_t)li * C + c] * fx;
    }
  }
}

/* The whole model's chunk: for each of the chunk's samples (process-row
 * index first + r / 2C), one evaluation-mode forward of its input x (row of
 * rows), p = softmax(z), q = softmax(z / T), and C backward passes from the
 * unit logit gradients e_c give dz_c/dtheta (this rank's columns only are
 * kept, in jz); then the sample's 2C rows, sqrt(p_k) (e_k - p)^T dz/dtheta
 * scaled as the classifier's. Every rank of a process row computes the
 * Jacobian of all the row's samples and keeps its own columns: C Ns backward
 * passes per process column, next to the Gram's 2C Ns n^2 / (nprow npcol). */
static void fill_model_chunk(fh_distmatrix *J, fh_gn_head *g, const float *rows, int nrow, int first, double cp,
                             double cq) {
  const int C = g->C, mb = J->mb, lc = J->local_cols;
  double p[2][FH_GN_MAX_CLASSES];
  float e[FH_GN_MAX_CLASSES];
  int *gcol = fh_malloc((size_t)(lc ? lc : 1) * sizeof(int));
  for (int lj = 0; lj < lc; lj++) gcol[lj] = fh_distmatrix_global_col(J, lj);
  for (int s = first; s < first + mb / (2 * C); s++) {
    const int r0 = (s - first) * 2 * C; /* its first row of the block: local row r0 (one block per process row) */
    if (s >= nrow) { /* padding: zero rows add nothing */
      for (int lj = 0; lj < lc; lj++) memset(J->local + (size_t)lj * J->lld + r0, 0, (size_t)2 * C * sizeof(double));
      continue;
    }
    const float *x = rows + (size_t)s * g->width;
    const float *z = fh_model_pass_forward(g->pass, x, 1, 0);
    for (int t = 0; t < 2; t++) { /* softmax(z) and softmax(z / T), in double */
      const double inv = t ? 1.0 / g->T : 1.0;
      double mx = z[0] * inv, sum = 0;
      for (int c = 1; c < C; c++) mx = fmax(mx, z[c] * inv);
      for (int c = 0; c < C; c++) sum += (p[t][c] = exp(z[c] * inv - mx));
      for (int c = 0; c < C; c++) p[t][c] /= sum;
    }
    for (int c = 0; c < C; c++) {
      memset(e, 0, (size_t)C * sizeof(float));
      e[c] = 1.0f;
      fh_model_pass_backward(g->pass, x, e, NULL, 1);
      const float *gr = fh_model_grads(fh_model_pass_model(g->pass));
      for (int lj = 0; lj < lc; lj++) g->jz[(size_t)c * lc + lj] = gr[gcol[lj]];
    }
    for (int t = 0; t < 2 * C; t++) {
      const double *pr = p[t < C ? 0 : 1];
      const int k = t < C ? t : t - C;
      double cf[FH_GN_MAX_CLASSES];
      const double scale = (t < C ? cp : cq) * sqrt(pr[k]);
      for (int c = 0; c < C; c++) cf[c] = scale * ((c == k ? 1.0 : 0.0) - pr[c]);
      for (int lj = 0; lj < lc; lj++) {
        double v = 0;
        for (int c = 0; c < C; c++) v += cf[c] * (double)g->jz[(size_t)c * lc + lj];
        J->local[(size_t)lj * J->lld + r0 + t] = v;
      }
    }
  }
  free(gcol);
}

static int solve(fh_gn_head *g, int n, const float *rows, double cp, double cq, double sigma, double lam,
                 double *rhs) {
  const fh_grid *grid = g->grid;
  /* the process row's samples, in rank order */
  int np_row;
  MPI_Comm_size(g->row_comm, &np_row);
  int *counts = fh_malloc((size_t)np_row * sizeof(int)), *displs = fh_malloc((size_t)np_row * sizeof(int));
  const int mine = n * g->width;
  MPI_Allgather(&mine, 1, MPI_INT, counts, 1, MPI_INT, g->row_comm);
  long long total = 0;
  for (int i = 0; i < np_row; i++) displs[i] = (int)total, total += counts[i];
  int rc = total > 0x7fffffffLL ? FH_FAIL(FH_ERR_RUNTIME, "second-order step: a process row holds %lld floats of "
                                                          "samples, more than 2^31-1; use more ranks", total)
                                : 0;
  FH_TRY(fh_error_agree(g->comm, rc));
  float *prow = fh_malloc((size_t)(total ? total : 1) * sizeof(float));
  MPI_Allgatherv(rows, mine, MPI_FLOAT, prow, counts, displs, MPI_FLOAT, g->row_comm);
  const int nrow = (int)(total / g->width);
  int maxrow = nrow;
  MPI_Allreduce(MPI_IN_PLACE, &maxrow, 1, MPI_INT, MPI_MAX, g->comm);
  const int nchunks = (maxrow + g->chunk - 1) / g->chunk;
  const int mb = 2 * g->C * g->chunk;

  fh_distmatrix *J = NULL, *H = NULL, *B = NULL;
  rc = fh_distmatrix_create(grid, grid->nprow * mb, g->n, mb, 0, &J);
  if (rc == 0) rc = fh_distmatrix_create(grid, g->n, g->n, 0, 0, &H);
  if (rc == 0) rc = fh_distmatrix_create(grid, g->n, 1, 0, 0, &B);
  rc = fh_error_agree(g->comm, rc);
  /* H = lam J^T J over the chunks (lower triangle) */
  double *coef = NULL;
  int *col_c = NULL, *col_j = NULL;
  if (rc == 0 && g->pass && !g->jz) g->jz = fh_malloc((size_t)g->C * (J->local_cols ? J->local_cols : 1) * sizeof(float));
  if (rc == 0) {
    coef = fh_malloc((size_t)(J->local_rows ? J->local_rows : 1) * g->C * sizeof(double));
    col_c = fh_malloc((size_t)(J->local_cols ? J->local_cols : 1) * sizeof(int));
    col_j = fh_malloc((size_t)(J->local_cols ? J->local_cols : 1) * sizeof(int));
  }
  for (int ch = 0; ch < nchunks && rc == 0; ch++) {
    if (g->pass)
      fill_model_chunk(J, g, prow, nrow, ch * g->chunk, cp, cq);
    else
      fill_chunk(J, g, prow, nrow, ch * g->chunk, cp, cq, coef, col_c, col_j);
    rc = fh_dist_gram(lam, J, ch == 0 ? 0.0 : 1.0, H);
  }
  free(coef);
  free(col_c);
  free(col_j);
  /* + sigma I */
  if (rc == 0)
    for (int lj = 0; lj < H->local_cols; lj++) {
      const int j = fh_distmatrix_global_col(H, lj);
      for (int li = 0; li < H->local_rows; li++)
        if (fh_distmatrix_global_row(H, li) == j) H->local[li + (size_t)lj * H->lld] += sigma;
    }
  if (rc == 0) {
    fh_distmatrix_scatter(B, grid->rank == 0 ? rhs : NULL, g->n);
    rc = fh_spd_solve(H, B);
    if (rc == 0) fh_distmatrix_gather(B, grid->rank == 0 ? rhs : NULL, g->n);
  }
  fh_distmatrix_destroy(B);
  fh_distmatrix_destroy(H);
  fh_distmatrix_destroy(J);
  free(prow);
  free(counts);
  free(displs);
  return rc;
}

int fh_gn_head_solve(fh_gn_head *g, int n, const float *rows, double cp, double cq, double sigma, double lam,
                     double *rhs) {
  return solve(g, n, rows, cp, cq, sigma, lam, rhs);
}

int fh_gn_model_solve(fh_gn_head *g, int n, const float *x, double cp, double cq, double sigma, double lam,
                      double *rhs) {
  return solve(g, n, x, cp, cq, sigma, lam, rhs);
}

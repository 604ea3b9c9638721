/* Truncated-SVD messages of a model's state (see lowrank.h): LAPACK's sgesdd
 * for the factors, one sgemm to rebuild a matrix. */
#include "fl/blocks/lowrank.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fl/payload.h"

/* LAPACK (linked through OpenBLAS) */
void sgesdd_(const char *jobz, const int *m, const int *n, float *a, const int *lda, float *s, float *u,
             const int *ldu, float *vt, const int *ldvt, float *work, const int *lwork, int *iwork, int *info,
             size_t jobz_len);

int fh_lowrank_create(fh_lowrank *lr, const fh_model *m, int max_rank) {
  memset(lr, 0, sizeof *lr);
  if (max_rank < 1) return FH_FAIL(FH_ERR_CONFIG, "lowrank: max_rank %d must be at least 1", max_rank);
  lr->state_n = fh_model_state_len(m);
  lr->dense_mask = fh_malloc(lr->state_n);
  memset(lr->dense_mask, 1, lr->state_n);
  lr->b = fh_calloc((size_t)fh_model_nviews(m) + 1, sizeof *lr->b);
  size_t maxr = 1, maxmn = 1, maxu = 1, maxvt = 1, off = 0;
  for (int v = 0; v < fh_model_nviews(m); v++) {
    const fh_param_view *pv = fh_model_view(m, v);
    if (pv->ndim < 2) continue;
    const int rows = pv->shape[0], cols = (int)(pv->numel / (size_t)rows);
    int cap = max_rank;
    if (cap > rows) cap = rows;
    if (cap > cols) cap = cols;
    if ((size_t)cap * (1 + (size_t)rows + cols) >= (size_t)rows * cols) continue; /* no gain: dense */
    fh_lowrank_block *b = &lr->b[lr->nblocks++];
    b->off = pv->offset, b->rows = rows, b->cols = cols, b->cap = cap, b->msg_off = off;
    off += (size_t)cap * (1 + (size_t)rows + cols);
    memset(lr->dense_mask + pv->offset, 0, pv->numel);
    /* x row-major [rows, cols] is A = x^T column-major [cols, rows] */
    const int r = rows < cols ? rows : cols;
    int info = 0, minus1 = -1, idummy = 0;
    float query = 0, dummy = 0;
    sgesdd_("S", &cols, &rows, &dummy, &cols, &dummy, &dummy, &cols, &dummy, &r, &query, &minus1, &idummy, &info,
            1);
    if (info == 0 && query >= lr->lwork) lr->lwork = (int)query + 1;
    if ((size_t)r > maxr) maxr = (size_t)r;
    if (pv->numel > maxmn) maxmn = pv->numel;
    if ((size_t)cols * r > maxu) maxu = (size_t)cols * r;
    if ((size_t)r * rows > maxvt) maxvt = (size_t)r * rows;
  }
  for (size_t i = 0; i < lr->state_n; i++) lr->dense_n += lr->dense_mask[i];
  lr->msg_n = off + lr->dense_n;
  lr->a = fh_malloc(maxmn * sizeof(float));
  lr->s = fh_malloc(maxr * sizeof(float));
  lr->u = fh_malloc(maxu * sizeof(float));
  lr->vt = fh_malloc(maxvt * sizeof(float));
  lr->work = fh_malloc(((size_t)lr->lwork + 1) * sizeof(float));
  lr->iwork = fh_malloc(8 * maxr * sizeof(int));
  return 0;
}

void fh_lowrank_destroy(fh_lowrank *lr) {
  free(lr->b);
  free(lr->dense_mask);
  free(lr->a);
  free(lr->s);
  free(lr->u);
  free(lr->vt);
  free(lr->work);
  free(lr->iwork);
  memset(lr, 0, sizeof *lr);
}

int fh_lowrank_energy_rank(const float *s, int r, double energy) {
  double total = 0, kept = 0;
  for (int i = 0; i < r; i++) total += (double)s[i] * s[i];
  if (!(total > 0)) return 0;
  int k = 0;
  while (k < r && (k == 0 || kept < energy * total)) kept += (double)s[k] * s[k], k++;
  return k;
}

/* One matrix's block <- its truncated factors; returns the rank kept. */
static int encode_block(fh_lowrank *lr, const fh_lowrank_block *b, const float *x, double energy, float *blk,
                        fh_lowrank_stats *st) {
  const int rows = b->rows, cols = b->cols, r = rows < cols ? rows : cols, cap = b->cap;
  float *s = blk, *U = blk + cap, *V = blk + cap + (size_t)cap * rows;
  memset(blk, 0, (size_t)cap * (1 + (size_t)rows + cols) * sizeof(float));
  memcpy(lr->a, x, (size_t)rows * cols * sizeof(float)); /* sgesdd destroys its input */
  int info = 0, lda = cols, ldu = cols, ldvt = r;
  sgesdd_("S", &lda, &rows, lr->a, &lda, lr->s, lr->u, &ldu, lr->vt, &ldvt, lr->work, &lr->lwork, lr->iwork, &info,
          1);
  if (info != 0) {
    if (st) st->failed++;
    return 0;
  }
  int k = fh_lowrank_energy_rank(lr->s, r, energy);
  if (k > cap) {
    if (st) st->clipped++;
    k = cap;
  }
  /* A = x^T = U_A S VT_A, so x = VT_A^T S U_A^T: x's left vectors are VT_A's
   * rows (stride r), its right vectors U_A's columns (contiguous). */
  for (int j = 0; j < k; j++) {
    s[j] = lr->s[j];
    for (int i = 0; i < rows; i++) U[(size_t)j * rows + i] = lr->vt[j + (size_t)i * r];
    memcpy(V + (size_t)j * cols, lr->u + (size_t)j * cols, (size_t)cols * sizeof(float));
  }
  return k;
}

void fh_lowrank_encode(fh_lowrank *lr, const float *x, double energy, float *msg, fh_lowrank_stats *st) {
  if (st) memset(st, 0, sizeof *st);
  size_t used = lr->dense_n;
  for (int i = 0; i < lr->nblocks; i++) {
    const fh_lowrank_block *b = &lr->b[i];
    const int k = encode_block(lr, b, x + b->off, energy, msg + b->msg_off, st);
    used += (size_t)k * (1 + (size_t)b->rows + b->cols);
  }
  float *dense = msg + (lr->msg_n - lr->dense_n);
  for (size_t i = 0, j = 0; i < lr->state_n; i++)
    if (lr->dense_mask[i]) dense[j++] = x[i];
  if (st) st->used = used;
}

void fh_lowrank_decode(const fh_lowrank *lr, const float *msg, float *x) {
  for (int i = 0; i < lr->nblocks; i++) {
    const fh_lowrank_block *b = &lr->b[i];
    const int rows = b->rows, cols = b->cols, cap = b->cap;
    const float *blk = msg + b->msg_off, *s = blk, *U = blk + cap, *V = blk + cap + (size_t)cap * rows;
    float *out = x + b->off;
    memset(out, 0, (size_t)rows * cols * sizeof(float));
    /* x += s_j u_j v_j^T, component by component (zero padding adds nothing) */
    for (int j = 0; j < cap; j++)
      if (s[j] != 0.0f) cblas_sger(CblasRowMajor, rows, cols, s[j], U + (size_t)j * rows, 1, V + (size_t)j * cols, 1,
                                   out, cols);
  }
  const float *dense = msg + (lr->msg_n - lr->dense_n);
  for (size_t i = 0, j = 0; i < lr->state_n; i++)
    if (lr->dense_mask[i]) x[i] = dense[j++];
}

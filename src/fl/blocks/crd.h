/* Contrastive representation distillation (CRD; Tian, Krishnan and Isola,
 * ICLR 2020), the term AugFL's server puts the pretrained model (PM) into R
 * with (their code weighs it 0.8): the student's and the PM's penultimate
 * features f_s [ds], f_t [dt] are embedded by linear heads to D dimensions
 * and L2-normalised,
 *
 *   v_s = norm(W_s f_s + b_s),  v_t = norm(W_t f_t + b_t),
 *
 * and each is the anchor of a noise-contrastive estimate against a memory
 * bank of the OTHER side's embeddings of every row (N rows x D): for a row i
 * with K negatives n_1..n_K (rows of other classes) and j_0 = i,
 *
 *   P_j = exp(M[j] . v / T) / Z,   c = K / N,
 *   L(v; M) = -log(P_0 / (P_0 + c + eps)) - sum_k log(c / (P_k + c + eps)),
 *   CRD = mean over the rows of L(v_s; M_t) + L(v_t; M_s),
 *
 * Z_s, Z_t fixed once, at the first batch the loss sees, to N times the mean
 * of exp(M[j] . v / T) over its rows and their K + 1 draws (eps = 1e-7). The
 * banks are not differentiated: the student's parameters get the gradient of
 * L(v_s; M_t) through f_s, the heads that of their own side's term. After a
 * pass every row's memory moves to norm(m M[i] + (1 - m) v) (momentum m).
 *
 * The state (heads, banks, Z) lives where the caller keeps it (AugFL: the
 * run's server state, so it is checkpointed); this file holds the arithmetic
 * and the draws. tests/unit/test_fl_crd.c checks loss, gradients, Z and the
 * memory step against PyTorch (tests/fixtures/make_crd_fixtures.py). */
#ifndef FH_CRD_H
#define FH_CRD_H

#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"

typedef struct {
  int ds, dt, D, K; /* feature widths, embedding width, negatives per row       */
  int64_t N;        /* rows of each memory bank                                 */
  float T, mom;     /* temperature, memory momentum                             */
  /* state, owned by the caller */
  float *head;      /* [fh_crd_head_n]: W_s [D, ds] | b_s [D] | W_t [D, dt] | b_t [D] */
  float *mem_s;     /* [N, D] the student's embeddings (M_s)                    */
  float *mem_t;     /* [N, D] the PM's (M_t)                                    */
  float *Z;         /* [2] Z_s (anchor v_s), Z_t (anchor v_t); < 0: not yet set */
  /* scratch for up to maxB rows */
  int maxB;
  float *es, *et;   /* [maxB, D] embeddings before normalising                 */
  float *vs, *vt;   /* [maxB, D] normalised: the last batch's v_s, v_t         */
  float *dv, *de;   /* [maxB, D]                                                */
  double *coef;     /* [K + 1]                                                  */
  /* Dense scores (set by fh_crd_create when N <= FH_CRD_DENSE_RATIO (K + 1)):
   * every row's score against the whole bank, S = v M^T, as one sgemm, the
   * draws' coefficients summed into C [B, N] and dv = C M as another, in place
   * of K + 1 gathered dot products and axpys a row. The choice depends on N
   * and K alone, so it is the same on every rank. 0: the gathered path. */
  int dense;
  float *S, *C;     /* [maxB, N] when dense                                     */
} fh_crd;

#define FH_CRD_DENSE_RATIO 8

/* Floats of the two heads: D (ds + 1) + D (dt + 1). */
size_t fh_crd_head_n(int ds, int dt, int D);

/* Scratch for batches of at most maxB rows; the state pointers stay NULL. */
void fh_crd_create(fh_crd *c, int ds, int dt, int D, int K, float T, float mom, int64_t N, int maxB);
void fh_crd_free(fh_crd *c);

/* First values of the state, from r: the heads as PyTorch's nn.Linear
 * (weight and bias U(-1/sqrt(in), 1/sqrt(in))), the banks U(-s, s) with
 * s = 1/sqrt(D/3) (the CRD code's ContrastMemory), Z = -1 (unset). */
void fh_crd_init_state(fh_crd *c, fh_rng *r);

/* The K + 1 memory rows of row `row` (class y): idx[0] = row, idx[1..K]
 * drawn uniformly, with replacement, from the rows of other classes.
 * by_class [N] lists the rows class by class, cls_off [C + 1] where each
 * class starts in it; some row must be of another class than y. */
void fh_crd_draw(fh_rng *r, int64_t row, int y, const int32_t *by_class, const int64_t *cls_off, int64_t N,
                 int K, int32_t *idx);

/* CRD of B rows (features fs [B, ds], ft [B, dt], memory rows idx [B, K + 1])
 * with the current heads and banks: returns the mean over the rows of
 * L(v_s; M_t) + L(v_t; M_s), sets Z where unset (from this batch), leaves
 * v_s, v_t in c->vs, c->vt, and writes dfs [B, ds] = weight d(CRD)/d(fs)
 * (overwritten) and adds weight d(CRD)/d(head) to ghead [fh_crd_head_n]
 * (NULL: skipped). B times the mean is what a fixed-point sum of chunks needs. */
double fh_crd_loss(fh_crd *c, const float *fs, const float *ft, const int32_t *idx, int B, float weight,
                   float *dfs, float *ghead);

/* The memory step of the B bank rows row0 .. row0 + B - 1 (v [B, D] their
 * new embeddings): out [B, D] = norm(m bank[row] + (1 - m) v). */
void fh_crd_memory_rows(const fh_crd *c, const float *bank, const float *v, int64_t row0, int B, float *out);

#endif

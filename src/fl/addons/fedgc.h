/* FedGC (Ye et al., arXiv:2312.05807): one-shot generated data before FL.
 *
 * Before round 1, every client k gets M_k generated samples, appended to its
 * train split, so that any algorithm (FedAvg, FedProx, SCAFFOLD, ...) trains
 * on the merged data; its aggregation weight is n_k + M_k or n_k
 * (fedgc.weights; fh_split_weight). Three design axes, each a deck key:
 *
 *   budget    M = fedgc.total over the K clients: equal; inverse to n_k
 *             (default); waterfill M_k = max(0, b - n_k) with the largest
 *             integer b such that sum M_k <= M, the remaining M - sum M_k
 *             samples one each to the clients at the level b (smallest n_k
 *             first, then lowest id), so that sum M_k = M exactly.
 *   design    the generator's "prompt": single | multi | diverse
 *             (data/generator.h).
 *   guidance  prompt | real | mixed with strength fedgc.strength.
 *
 * Class mix of a client's M_k (fedgc.class_mix): pool = the class shares of
 * the generator's rows (or of the external pool), by largest remainder; or
 * missing = proportional to each class's deficit max(0, p_c (n_k + M_k) -
 * n_kc), so the merged split tends to the pool's shares and the classes the
 * client lacks get the most.
 *
 * The generator is fitted at the server on data.server_fraction's rows
 * (no client sees them), spread over all ranks in data.server_shards shards;
 * or fedgc.pool names an HDF5 file of generated samples used instead, or
 * fedgc.source = holdout deals the server's real rows themselves by the same
 * budgets and class mix (the generator's baseline; counted as generated, so
 * the membership score's members stay the clients' own rows).
 * Client k's samples come from the stream (seed, FH_RNG_GENERATE, k, none) on
 * the rank that hosts it, so they do not depend on the rank count; they are
 * regenerated, not stored, when a run resumes (the fit is deterministic).
 *
 * Privacy: fedgc.membership scores a membership-inference attack on the
 * final model (fl/addons/membership.h).
 *
 * An add-on (fl/addon.h, fh_addon_fedgc): its data_ready hook runs
 * fh_fedgc_prepare. */
#ifndef FH_FEDGC_H
#define FH_FEDGC_H

#include "core/config.h"
#include "fl/addon.h"
#include "fl/addons/membership.h"
#include "fl/run.h"

extern const fh_key_spec fh_fedgc_keys[];
extern const fh_addon fh_addon_fedgc;

enum { FH_BUDGET_EQUAL = 0, FH_BUDGET_INVERSE, FH_BUDGET_WATERFILL };
enum { FH_MIX_POOL = 0, FH_MIX_MISSING };

/* M_k [K] of M over clients of train sizes n [K] (sum M_k = M). *level gets
 * waterfill's b (NULL: not wanted; -1 for the other methods). */
void fh_fedgc_budgets(int method, long long M, const int *n, int K, int *out, long long *level);

/* Largest-remainder rounding: out [m] >= 0 with sum out = total, out_i the
 * floor of total * w_i / sum w plus one for the largest remainders (ties:
 * lower index). All w zero: out zero. */
void fh_fedgc_apportion(long long total, const double *w, int m, int *out);

/* Class counts out [C] of a client's Mk generated samples: mix FH_MIX_POOL
 * (by freq [C]) or FH_MIX_MISSING (by deficits against freq, given the
 * client's own counts have [C]). */
void fh_fedgc_class_counts(int mix, int Mk, int C, const double *freq, const int *have, int *out);

/* Collective, after the data are loaded and before the algorithm's setup:
 * with fedgc.enabled, fits the generator (or reads the pool), generates every
 * local client's samples and merges them into its train split. */
int fh_fedgc_prepare(fh_run *run);

#endif

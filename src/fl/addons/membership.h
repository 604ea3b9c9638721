/* Privacy of a run's final model: with fedgc.membership = true (any run,
 * with or without generated data) a loss-threshold membership-inference attack
 * on the final global model is scored: AUC of "member" (clients' real train
 * rows) against "non-member" (clients' test rows), lower loss meaning member;
 * written to RUN/membership.h5 (docs/fedgc.md). An add-on (fl/addon.h,
 * fh_addon_membership) whose finish hook runs fh_fedgc_membership. */
#ifndef FH_MEMBERSHIP_H
#define FH_MEMBERSHIP_H

#include "fl/addon.h"
#include "fl/run.h"

extern const fh_addon fh_addon_membership;

/* Collective, at the end of a complete run: the attack's AUC on the final
 * global model, written by rank 0 to run_dir/membership.h5. */
int fh_fedgc_membership(fh_run *run, const char *run_dir);

/* AUC of the score "lower loss = member": P(loss of a random non-member >
 * loss of a random member) + P(equal) / 2 (Mann-Whitney, average ranks of
 * ties). loss [nm + nn]: members first. Sorts a copy. */
double fh_fedgc_auc(const double *loss, long long nm, long long nn);

#endif

/* run.schedule: which rank trains each of the round's sampled clients.
 *
 * static: its host (fl/client_map.h), as the round loop always did.
 * balanced: every rank deals the round's sampled clients to the ranks itself,
 * from their estimated costs, and gets the same assignment (no message):
 * longest processing time first (ties by client id), each client to the rank
 * where it would finish first, counting on a rank other than its host the
 * time to move it. The cost of client k is its train rows x epochs (or
 * train.iterations x train.batch_size) x the model's forward + backward FLOPs
 * per sample; the time of moving it is its bytes / the bandwidth measured in
 * earlier rounds (the best round so far: a slow one also holds waits for a
 * late partner; run.schedule_bandwidth fixes it). Seconds per unit of cost
 * come from the last round's compute times over all ranks. Before a round
 * has measured them: 1 GFLOP/s and 1 GB/s (guesses, for the first round). A client stays home when
 * moving it would not end it sooner, and the whole round stays static when
 * the dealt makespan is not below the static one.
 *
 * A client trained away from its host: the host sends its train and test rows
 * (as the host holds them, FedGC's generated rows included) and its whole
 * client-store state (fh_client_store_pack: every field a checkpoint saves) to
 * the executing rank, which installs them as a guest of its store, runs the
 * client and sends the state back; the host puts it back into its store, so
 * checkpoints and evaluation see the host's store as under static. A guest's
 * vectors stay readable on the executing rank until the next round (add-ons'
 * round_end read them: the LIPS inertia record).
 *
 * Results do not depend on where a client runs: its contribution goes into
 * the fixed-point accumulator (int64 sums, order-free), and its random
 * streams are keyed by (seed, purpose, client, round). An algorithm whose
 * clients cannot move (a chain along the hosts) sets run->schedule_static in
 * its setup; balanced then keeps every client home and says why once. */
#ifndef FH_SCHEDULE_H
#define FH_SCHEDULE_H

#include <stdint.h>

#include "fl/run.h"

/* ---- the assignment, pure ------------------------------------------------------ */

typedef struct {
  int m;               /* clients to place                                        */
  const int *id;       /* [m] their ids (ties of cost: smaller id first)          */
  const double *cost;  /* [m] estimated compute, >= 0, any unit                   */
  const int *host;     /* [m] the rank hosting each                               */
  const double *move;  /* [m] time of moving each off its host, cost's unit; NULL: 0 */
  int nranks;          /* ranks 0 .. nranks-1                                     */
  const uint8_t *can;  /* [nranks] 1: may train clients; NULL: every rank         */
} fh_lpt_problem;

/* LPT with move costs. A: clients by cost descending (ties by id ascending),
 * each to the rank r minimising load[r] + cost + (r != host ? move : 0) (ties:
 * the host, then the lowest rank); then, cheapest first, a moved client goes
 * back to its host where that does not raise the makespan. B: the same order,
 * but a client stays home while its host's load stays within A's makespan.
 * The shorter of A and B (B on a tie with no more moves) is taken, or static
 * (every client at its host) when that is not longer. exec [m]: the
 * executing rank of each client. Returns the makespan of exec (moves
 * included), in cost's unit. With every move 0 it is at most
 * (4/3 - 1/(3 P)) OPT (Graham 1969: A's bound, and B and static are taken
 * only when not longer), P the ranks that may train. */
double fh_lpt_assign(const fh_lpt_problem *p, int *exec);

/* The makespan of an assignment: max over ranks of the costs (and moves) it
 * puts there. */
double fh_lpt_makespan(const fh_lpt_problem *p, const int *exec);

/* ---- in the round loop (collective) ------------------------------------------- */

typedef struct fh_schedule fh_schedule;

/* Collective, after the run's setup: reads run.schedule; balanced learns
 * every client's row counts (one allgather). Never fails. */
void fh_schedule_create(fh_schedule **out, fh_run *run);
void fh_schedule_free(fh_schedule *s);
/* 1 when the round's clients are dealt (run.schedule = balanced, more than
 * one rank, no algorithm pinned them). */
int fh_schedule_active(const fh_schedule *s);

/* Trains sampled client j (0 <= j < m) with data: what the round loop does
 * for one client (client_update, its report). Non-zero: an error (set). */
typedef int (*fh_schedule_client_fn)(void *ctx, int j, const fh_client_data *data);

/* Collective, the round's local phase under balanced: deals the sampled
 * clients [m] (ascending ids), moves them, calls fn for each client this
 * rank trains (its own first, then its guests, ascending ids), returns the
 * moved state to the hosts. A failed client stops this rank's remaining
 * clients; its error code is returned (agreed by the caller). */
int fh_schedule_local_updates(fh_schedule *s, fh_run *run, const int *sampled, int m, fh_schedule_client_fn fn,
                              void *ctx);

/* Collective, after the local phase of a dealt round: the round's compute and
 * move times over ranks (one small allreduce) for the next round's estimates
 * and the metrics. */
void fh_schedule_round_end(fh_schedule *s, MPI_Comm comm);

/* The last dealt round, for metrics.h5: clients moved, bytes moved (rows and
 * state out, state back; the same on every rank), and seconds spent moving
 * (max over ranks: packing, waiting for and unpacking the moves). Zeros when
 * the round was not dealt. */
void fh_schedule_moved(const fh_schedule *s, double *clients, double *bytes, double *seconds);

/* Rank 0, at the end of a dealt run: one line with the cost model's local
 * max/mean over ranks (sum over rounds of the slowest rank's estimated cost
 * over the mean rank's), dealt and static (what a machine whose ranks own
 * their cores would see, whatever the load here), the same measured on the
 * time spent training clients (the local phase less moves and waits for
 * returned state), and the moves in all. */
void fh_schedule_report(const fh_schedule *s, int rank);

#endif

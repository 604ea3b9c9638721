/* One federated algorithm = one file that fills this table, plus one line in
 * src/fl/registry.c. The round loop (src/fl/round.c) owns sampling, the
 * broadcast, the reduction, evaluation, metrics and profiling; an algorithm
 * only says what a client does with the global payload and what the server does
 * with the sum of the contributions.
 *
 * Round t, as data:
 *   rank 0 -> all   MPI_Bcast(run->global, payload_n floats; only the first
 *                   run->bcast_n when an algorithm sets it: a payload whose
 *                   tail is per-client upload slots, FedGH's and FedKD's)
 *   each rank       for its sampled clients, in id order: client_update(), which
 *                   adds its weighted contribution with fh_accum_add()
 *   all -> rank 0   one MPI_Reduce of the fixed-point accumulator
 *   every rank      server_collective(), where the algorithm has one: server
 *                   work spread over all ranks (AugFL's regulariser gradient
 *                   over the server data, a ScaLAPACK solve)
 *   rank 0          server_step() turns the sum into the next run->global
 *
 * State across rounds, and what a checkpoint (src/fl/checkpoint.h) saves:
 *   run->global          the global payload (rank 0's)
 *   run->state           per-client vectors: declare fields in setup with
 *                        fh_client_store_field(), use them in client_update with
 *                        fh_client_store_acquire/release (fl/client_state.h)
 *   server vectors       fh_run_server_state(run, "name", n) in setup (fl/run.h):
 *                        zeroed, on every rank; rank 0's values are saved and
 *                        every rank gets them back on resume
 * Nothing else is saved: whatever an algorithm keeps in run->alg_state must be
 * scratch (rebuilt every round, like local SGD's buffers) or derived from the
 * deck, or a resumed run would differ from an uninterrupted one. Randomness
 * comes from streams keyed by (seed, purpose, client, round) (core/rng.h), never
 * from a generator carried across rounds. The scratch model's BatchNorm buffers
 * count as state too: an algorithm with such layers keeps them in the payload or
 * in a client-state field.
 *
 * The payload's head is the model's state (src/fl/payload.h); an algorithm
 * may append its own part in setup (grow run->payload_n and run->global).
 * Evaluation (src/fl/evaluate.c) reads the model from that head, and asks
 * client_model, where the algorithm has one, for each client's own model.
 */
#ifndef FH_ALGORITHM_H
#define FH_ALGORITHM_H

#include <stdio.h>

#include "core/config.h"
#include "data/dataset.h"
#include "fl/accumulate.h"

typedef struct fh_run fh_run;
typedef struct fh_client_ctx fh_client_ctx;

/* What a client reports besides its contribution (for metrics). */
typedef struct {
  double train_loss; /* mean loss over its last local epoch */
  double weight;     /* aggregation weight it used (n_k)     */
} fh_client_report;

/* flags */
/* No global model: each client trains its own, nothing is broadcast or
 * reduced (Local); the global-model evaluations are not made. */
#define FH_ALG_NO_GLOBAL 1u
/* A payload travels (broadcast and reduction as usual) but it is no model of
 * the data (pFedAFM's shared extractor, LG-FedAvg's header, prototypes):
 * the global-model evaluations are not made, each client is evaluated with
 * its own model only (client_model or client_evaluate). */
#define FH_ALG_NO_GLOBAL_MODEL 2u
/* Capabilities that add-ons and the checks read instead of names: */
/* Each client trains by local SGD (fl/blocks/local_sgd.h) from the global
 * model and runs the add-ons' client hooks around it (fh_addons_client_begin
 * and _end, fl/addon.h): LIPS works on it. */
#define FH_ALG_LOCAL_SGD 4u
/* The aggregation weight is the train split's sample weight (fh_split_weight):
 * fedgc.weights = real is honoured. */
#define FH_ALG_SAMPLE_WEIGHTS 8u
/* server_step is a deterministic function of the reduced sum and run->global
 * alone (no server state, no output, nothing only rank 0 holds): the engine
 * may run it on every rank after one allreduce, instead of the reduction to
 * rank 0, the step there and the next broadcast (run.allreduce). */
#define FH_ALG_SERVER_ANY_RANK 16u

/* A case of the registry-driven tests of tests/mpi/ (`fedhpc help algorithms
 * --tests` lists them, one line each): the checks it takes part in, and the
 * deck keys it sets on top of the test's deck. An algorithm whose table has
 * no cases (tests NULL) gets one case named after it, with no settings, in
 * every check: a newly registered algorithm is covered without a test edit. */
#define FH_TEST_RANKS 1u        /* bitwise equal on 1, 2, 3 ranks (test_bitwise_ranks_algorithms.sh) */
#define FH_TEST_RESUME 2u       /* resumed = uninterrupted, every rank pair, kill, signals (test_checkpoint*.sh) */
#define FH_TEST_RESUME_SHORT 4u /* resumed = uninterrupted, 3 -> 2 ranks only (test_checkpoint.sh) */
#define FH_TEST_DECK 8u         /* runs from a deck: an input/ deck, else quickstart.ini (test_input_decks.sh) */
typedef struct {
  const char *name;      /* the case, unique within a check; NULL ends a list        */
  unsigned checks;       /* FH_TEST_*                                                 */
  const char *settings;  /* "section.key=value ..." (no spaces in a value); @SRC_DIR@:
                            the source tree                                           */
  const char *measured;  /* metrics.h5 datasets that must hold a number in (0, 1]   */
  const char *algorithm; /* run.algorithm; NULL: the table's own (an add-on names one) */
} fh_test_case;

typedef struct fh_algorithm {
  const char *name;           /* value of run.algorithm            */
  const char *summary;        /* one line for --help               */
  const fh_key_spec *keys;    /* its own deck section, or NULL     */
  /* Called on every rank after the model and data exist: allocate global and
   * per-client state. May be NULL. */
  int (*setup)(fh_run *run);
  /* Local work of one client on the global payload run->global; adds its
   * contribution into acc. c gives the client's data, model and state. */
  int (*client_update)(fh_run *run, fh_client_ctx *c, fh_accum *acc, fh_client_report *rep);
  /* Rank 0 only: the reduced sum is in acc; update run->global. May be NULL
   * with FH_ALG_NO_GLOBAL. */
  int (*server_step)(fh_run *run, const fh_accum *acc);
  /* Every rank, after the reduction and before server_step (NULL: none).
   * run->global still holds theta^t on every rank; acc holds the reduced sum
   * on rank 0 only. What it computes for server_step stays in alg_state. A
   * collective: it agrees on errors (fh_error_agree) before any collective
   * call a failed rank would skip, and returns the same code on every rank. */
  int (*server_collective)(fh_run *run, const fh_accum *acc);
  void (*destroy)(fh_run *run); /* may be NULL */
  /* Personalised methods: loads into c->model the model client c is evaluated
   * with, from run->global (the same on every rank) and the client's state.
   * Called in evaluation rounds for every hosted client, not only the sampled
   * ones; must not change the client's state. NULL: every client is evaluated
   * with the global model. */
  int (*client_model)(fh_run *run, fh_client_ctx *c);
  unsigned flags; /* FH_ALG_* */
  /* Personalised methods whose client model is not one model of the run's
   * architecture (each client its own architecture, or two models whose
   * features mix): *correct gets the number of right argmax predictions of
   * client c's model on sp, *loss_sum its summed cross-entropy. Same calls
   * and same promise as client_model, which it replaces when set. */
  int (*client_evaluate)(fh_run *run, fh_client_ctx *c, const fh_split *sp, double *correct,
                         double *loss_sum);
  /* Algorithms whose payload's head is not the state of run->model that
   * model.h5 and the global-model evaluations should use (FedKD broadcasts a
   * compressed update and keeps the student it updates beside; FedProto's
   * prototypes make a classifier): that state [model_n]. Called on every rank
   * once run->global is in sync; NULL on failure (the error set). NULL hook:
   * run->global. */
  const float *(*global_model)(fh_run *run);
  /* Its cases of the registry-driven tests (above); NULL: one default case. */
  const fh_test_case *tests;
} fh_algorithm;

/* Registry (src/fl/registry.c). */
const fh_algorithm *fh_algorithm_find(const char *name);
int fh_algorithm_count(void);
const fh_algorithm *fh_algorithm_at(int i);
/* "fedavg|..." for the run.algorithm enum. */
const char *fh_algorithm_choices(void);
/* `fedhpc help algorithms`: every algorithm and add-on with its summary;
 * tests: the test cases instead, one line each, fields separated by |: case,
 * algorithm, checks (ranks,resume,resume-short,deck), settings, measured. */
void fh_registry_write(FILE *out, int tests);
/* The names of the registered algorithms with every flag of flags, as
 * "a, b or c" (conj "or") into buf. */
void fh_algorithm_names_with(unsigned flags, const char *conj, char *buf, size_t len);

#endif

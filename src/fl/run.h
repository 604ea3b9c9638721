/* A federated run: everything one rank knows about it. */
#ifndef FH_RUN_H
#define FH_RUN_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/profile.h"
#include "data/dataset.h"
#include "fl/algorithm.h"
#include "fl/client_map.h"
#include "fl/client_state.h"
#include "nn/model.h"

/* Deck keys of [run] and [output]; call fh_run_keys_prepare() once before
 * loading a deck (it fills run.algorithm's choices from the registry). */
extern const fh_key_spec *const fh_run_keys;
void fh_run_keys_prepare(void);

/* What the client_update of an algorithm works with. */
struct fh_client_ctx {
  int id;                     /* global client id                  */
  int round;                  /* 0-based round                     */
  const fh_client_data *data; /* its train/test samples            */
  fh_model *model;            /* the rank's scratch model          */
};

/* A server-side vector of the algorithm (see fh_run_server_state). */
typedef struct {
  char name[64];
  fh_state_type type;
  size_t n;
  void *data; /* [n], on every rank */
} fh_server_vec;

struct fh_run {
  MPI_Comm comm;
  int rank, nranks;
  const fh_config *cfg;
  uint64_t seed;
  int rounds;
  fh_client_map map;
  int first_client, nlocal; /* this rank's clients              */
  fh_dataset *data;         /* this rank's clients' samples      */
  fh_model *model;          /* scratch model for local work       */
  const fh_algorithm *alg;
  void *alg_state;          /* the algorithm's own state          */
  size_t payload_n;         /* floats reduced (and broadcast)     */
  size_t bcast_n;           /* floats broadcast, its head; 0: payload_n
                               (the rest only goes up: FedGH's and FedKD's
                               per-client slots)                  */
  size_t model_n;           /* its head, the model's state: nparams + nbuffers */
  float *global;            /* [payload_n], the global payload    */
  /* Held-out target clients (eval.holdout_clients): never sampled for
   * training, evaluated by adapting the global model (src/fl/evaluate.c). */
  int nholdout;             /* how many                           */
  int *holdout;             /* [nholdout] ascending ids; NULL when none   */
  int *train_ids;           /* [K - nholdout] ascending: the clients that
                               train; NULL when none is held out  */
  fh_client_store *state;   /* per-client state (fl/client_state.h) */
  int nserver;              /* server-side vectors                 */
  fh_server_vec *server;    /* [nserver]                           */
  fh_profiler prof;
  char dir[4096];           /* the run folder                      */
  struct fh_addon_slot *addons; /* [fh_addon_count()] each add-on's place (fl/addon.h) */
  int resume;               /* 1: execute continues from dir/checkpoint.h5 */
  /* Set by an algorithm's or add-on's setup whose clients cannot run away
   * from their host (a chain along the ranks): why run.schedule = balanced
   * keeps every client home (src/fl/schedule.h). NULL: they can move. */
  const char *schedule_static;
};

/* Creates the run from a loaded config on comm (collective); its folder is
 * output.dir/output.name (default: the deck's name). */
int fh_run_create(fh_run **out, const fh_config *cfg, MPI_Comm comm);
/* The run folder of a deck: output.dir/<output.name or the deck's derived name>. */
int fh_run_dir_path(const fh_config *cfg, char *out, size_t len);
/* The same with the run folder given (run_dir NULL: as fh_run_create). */
int fh_run_create_at(fh_run **out, const fh_config *cfg, MPI_Comm comm, const char *run_dir);
/* Collective over the ranks of a node, before the model is allocated: the
 * memory each rank needs for an MLP (parameters, gradients, optimiser,
 * payload, accumulator) against MemAvailable and the cgroup's limit; a model
 * that cannot fit is FH_ERR_CONFIG with the estimate and what is available. */
int fh_run_memory_check(const fh_run *run);
/* Collective, after setup: warns (rank 0) when the memory backend's client
 * state, once every client has trained, would exceed the node's memory. */
void fh_run_state_memory_check(const fh_run *run);
/* The round loop: writes the run folder (collective; errors agreed by all).
 * out_dir NULL: run->dir. */
int fh_run_execute(fh_run *run, const char *out_dir);
void fh_run_free(fh_run *run);

/* The clients sampled in round t (0-based), as every rank draws them: m =
 * run.clients_per_round, or run.client_fraction of the training clients (at
 * least 1, at most all), from the stream (seed, FH_RNG_SAMPLING, -, t), in
 * ascending id order past the held-out clients. fh_run_sampled_count gives m;
 * sampled has room for m. */
int fh_run_sampled_count(const fh_run *run);
void fh_run_sample(const fh_run *run, int t, int *sampled);

/* Server-side state of an algorithm beyond run->global (SCAFFOLD's server
 * control variate, a server optimiser's moments): n elements named name
 * ("scaffold.c"), zero-filled, allocated on every rank. Declare them in the
 * algorithm's setup, with the same calls in the same order on every rank; the
 * pointer stays valid until fh_run_free. A checkpoint saves rank 0's values and
 * a resumed run gets them back on every rank, so an algorithm that keeps them
 * only on rank 0 (updated in server_step) or in step on every rank is restored
 * either way. A name declared twice is a programming error (abort). */
float *fh_run_server_state(fh_run *run, const char *name, size_t n);

/* Position of k in the ascending ids a [n], -1 when absent (binary search). */
int fh_sorted_index(const int *a, int n, int k);
/* Whether client k is held out of training (eval.holdout_clients). */
int fh_run_is_holdout(const fh_run *run, int k);
void *fh_run_server_state_typed(fh_run *run, const char *name, fh_state_type type, size_t n);

#endif

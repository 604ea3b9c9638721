/* The pretrained model (PM) a server holds: `fedhpc pretrain DECK` trains it
 * on the server's rows (data.server_fraction: train-pool rows no client sees)
 * and writes it as a model file; AugFL (src/fl/alg/augfl.c) reads it.
 *
 * Training is data-parallel over all ranks: each rank holds whole shards of
 * the server rows (fl/blocks/server_shards.h). A step takes pretrain.batch rows from
 * every shard (from a permutation of the shard drawn per epoch from (seed,
 * FH_RNG_SERVER, shard, epoch)). Groups of G = ceil(pretrain.chunk /
 * pretrain.batch) consecutive shards are the unit of work (ranks hold whole
 * groups, fh_server_shards_load_grouped): a group's minibatches are one batch,
 * so its products are large enough to run near the sgemm rate and do not
 * depend on the rank count. The groups' gradients are summed in fixed point
 * with ONE MPI_Allreduce of [gradient sums | BatchNorm statistics | loss,
 * rows, minibatches]. Every rank
 * then takes the same SGD step (torch.optim.SGD: momentum, weight decay), so
 * the model is the same on every rank and, bit for bit, on any rank count. A
 * step's batch is data.server_shards x pretrain.batch rows; BatchNorm layers
 * normalise each group's batch by its own statistics (as data-parallel
 * training without synchronised BatchNorm does) and the running statistics
 * become the mean of the groups' updates.
 *
 * With pretrain.checkpoint_every = e, PM.ckpt.h5 (parameters, buffers,
 * momentum, step count, epoch) is written every e epochs and when SIGTERM or
 * SIGUSR1 arrives (exit 75); `fedhpc pretrain DECK --resume` continues from it
 * and ends with the same model as an uninterrupted run. The checkpoint stays
 * after the run, so a larger pretrain.epochs can extend it with --resume (the
 * same as training that long at once with pretrain.schedule = constant; the
 * cosine schedule depends on pretrain.epochs). */
#ifndef FH_PRETRAIN_H
#define FH_PRETRAIN_H

#include <mpi.h>
#include <stddef.h>

#include "core/config.h"
#include "fl/addon.h"
#include "nn/model.h"

extern const fh_key_spec fh_pretrain_keys[];
/* An add-on of keys only (pm.*, pretrain.*): no hook runs in a federated
 * run; AugFL and `fedhpc pretrain` read them. */
extern const fh_addon fh_addon_pretrain;

/* The PM's file: pm.path, or output.dir/<deck name>.pm.h5. */
void fh_pm_path(const fh_config *cfg, char *out, size_t len);

/* The PM's logits for a data set of `classes` classes: pm.outputs, or the
 * meta-model's (fh_model_outputs) when it is 0. FH_ERR_CONFIG below the classes. */
int fh_pm_outputs(const fh_config *cfg, int classes, int *outputs);

/* The PM's architecture (pm.arch, pm.hidden; empty: the deck's model.*) for
 * inputs [c, h, w] and C outputs (fh_pm_outputs), parameters uninitialised. FH_ERR_CONFIG
 * naming pm.arch / pm.hidden. */
int fh_pm_create(fh_model **out, const fh_config *cfg, int c, int h, int w, int C, int max_batch);

/* fedhpc pretrain: trains the PM and writes fh_pm_path (collective over comm;
 * errors agreed). resume: continue from the PM's checkpoint. Returns 0,
 * FH_EXIT_REQUEUE when a signal stopped it after a checkpoint, or an error. */
int fh_pretrain(const fh_config *cfg, MPI_Comm comm, int resume);

#endif

/* fedhpc partition DECK [--set ...] [--out FILE]: deals the deck's dataset to
 * its clients as partition.* says, without training, prints the summary
 * (sizes, classes per client, label skew) and writes partition.h5 (client x
 * class counts of the train and test splits) for analysis/plot_partition.py.
 *
 * fedhpc partition --bench [DECK] [--set ...] [--clients K] [--labels N,...]:
 * times every method on K clients over N random labels of 10 classes.
 *
 * Rank 0 does the work; the other ranks wait for its verdict. */
#include <errno.h>
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cmd/commands.h"
#include "core/error.h"
#include "core/log.h"
#include "core/paths.h"
#include "core/rng.h"
#include "data/partition.h"
#include "data/server_split.h"
#include "data/source.h"
#include "fl/evaluate.h"

/* ---- labels of the deck's dataset ------------------------------------------------ */

/* The one place that says where the labels come from. */
/* Any pool source (data/source.h): its labels are read at open, features never. */
static int open_labels(fh_source **out, const fh_config *cfg) { return fh_source_open(out, cfg); }

/* ---- output path ---------------------------------------------------------------- */

/* output.dir/NAME/partition.h5, NAME = output.name or the deck's base name. */
static int default_out(const fh_config *cfg, char *path, size_t len) {
  char base[256];
  FH_TRY(fh_run_name(cfg, "partition", base, sizeof base));
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/%s", fh_cfg_str(cfg, "output.dir"), base);
  if (fh_mkdir_p(dir) != 0)
    return FH_FAIL(FH_ERR_OUTPUT, "output.dir = '%s': cannot create '%s': %s; set output.dir or give --out FILE",
                   fh_cfg_str(cfg, "output.dir"), dir, strerror(errno));
  snprintf(path, len, "%s/partition.h5", dir);
  return 0;
}

/* ---- fedhpc partition DECK ------------------------------------------------------- */

static int partition_deck(const fh_config *cfg, const char *out_path) {
  fh_source *src = NULL;
  FH_TRY(open_labels(&src, cfg));
  int K = (int)fh_cfg_int(cfg, "run.clients");
  uint64_t seed = (uint64_t)fh_cfg_int(cfg, "run.seed");
  fh_client_rows train = {0}, test = {0};
  int64_t *tc = NULL, *sc = NULL;
  double t0 = MPI_Wtime(), t1 = t0, t2 = t0;
  int rc = fh_partition_check_natural(cfg, src->natural_clients, K);
  const int64_t *noff[2] = {NULL, NULL};
  if (rc == 0 && src->natural_clients == K) {
    noff[0] = src->offsets[FH_SPLIT_TRAIN];
    noff[1] = src->offsets[FH_SPLIT_TEST];
  }
  if (rc == 0)
    rc = fh_partition_train_clients(cfg, seed, src->labels[FH_SPLIT_TRAIN], src->n[FH_SPLIT_TRAIN],
                                    src->num_classes, K, noff[0], &train);
  t1 = MPI_Wtime();
  if (rc == 0)
    rc = fh_partition_test(cfg, seed, &train, src->labels[FH_SPLIT_TRAIN], src->labels[FH_SPLIT_TEST],
                           src->n[FH_SPLIT_TEST], src->num_classes, noff[1], &test);
  t2 = MPI_Wtime();
  const char *method = fh_partition_method(cfg, noff[0] != NULL);
  char path[4200];
  if (rc == 0) {
    if (out_path) snprintf(path, sizeof path, "%s", out_path);
    else rc = default_out(cfg, path, sizeof path);
  }
  if (rc == 0) {
    tc = fh_partition_counts(&train, src->labels[FH_SPLIT_TRAIN], src->num_classes);
    sc = fh_partition_counts(&test, src->labels[FH_SPLIT_TEST], src->num_classes);
    fh_partition_stats st;
    fh_partition_summarize(tc, sc, K, src->num_classes, &st);
    fh_info("dataset %s: %lld train and %lld test rows, %d classes", src->name,
            (long long)src->n[FH_SPLIT_TRAIN], (long long)src->n[FH_SPLIT_TEST], src->num_classes);
    fh_partition_print(method, &st);
    int64_t *held = NULL, nheld = 0;
    if (fh_server_rows(cfg, seed, src->labels[FH_SPLIT_TRAIN], src->n[FH_SPLIT_TRAIN], src->num_classes, &held,
                       &nheld) == 0 && nheld > 0)
      fh_info("  %lld train rows held out for the server (data.server_fraction = %g), dealt to no client",
              (long long)nheld, fh_cfg_real(cfg, "data.server_fraction"));
    free(held);
    fh_info("  partitioned in %.1f ms (train %.1f ms, test %.1f ms)", 1e3 * (t2 - t0), 1e3 * (t1 - t0),
            1e3 * (t2 - t1));
    int *hold = NULL, nhold = 0;
    rc = fh_holdout_draw(cfg, seed, K, &hold, &nhold);
    if (rc == 0)
      rc = fh_partition_write_rows(path, cfg, method, tc, sc, K, src->num_classes, &train, &test, hold, nhold);
    free(hold);
    if (rc == 0) fh_info("wrote %s", path);
  }
  free(tc);
  free(sc);
  fh_client_rows_free(&train);
  fh_client_rows_free(&test);
  fh_source_close(src);
  return rc;
}

/* ---- fedhpc partition --bench ---------------------------------------------------- */

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const struct {
  const char *name;
  const char *sets[4];
} bench_methods[] = {
    {"iid", {"partition.method=iid"}},
    {"dirichlet a=0.5", {"partition.method=dirichlet", "partition.alpha=0.5", "partition.min_size=1"}},
    {"shards k=2", {"partition.method=shards", "partition.classes_per_client=2"}},
    {"shards_pfedafm k=2", {"partition.method=shards_pfedafm", "partition.classes_per_client=2"}},
    {"lowdata 100/client", {"partition.method=lowdata", "partition.samples_per_client=100", "partition.alpha=0.1"}},
    {"lips 100/client", /* 4 test rows each: 100,000 clients x 400 would be 40M rows */
     {"partition.method=lips", "partition.samples_per_client=100", "partition.alpha=0.1", "partition.test_per_client=4"}},
    {"twoclass", {"partition.method=twoclass"}},
    {"quantity s=1", {"partition.method=quantity", "partition.size_sigma=1", "partition.min_size=1"}},
};

static int bench(int argc, char **argv, const char *deck, int K, const char *label_list) {
  const fh_key_spec *tables[64];
  int nt = fh_all_key_tables(tables, 64);
  const char **sets = fh_calloc((size_t)argc + 8, sizeof(char *));
  int nbase = 0;
  for (int i = 0; i < argc; i++) {
    if ((strcmp(argv[i], "--set") == 0 || strcmp(argv[i], "-s") == 0) && i + 1 < argc) sets[nbase++] = argv[++i];
    else if (strncmp(argv[i], "--set=", 6) == 0) sets[nbase++] = argv[i] + 6;
  }
  const int C = 10;
  fh_info("fedhpc partition --bench: %d clients, %d classes, labels uniform at random, test pool labels/6; "
          "best of 3, wall-clock seconds (CPU seconds of this process)",
          K, C);
  fh_info("  %-20s %9s %17s %17s   %s", "method", "labels", "train", "test", "train rows per client min/mean/max");
  int rc = 0;
  char list[512];
  snprintf(list, sizeof list, "%s", label_list);
  for (char *tok = strtok(list, ","); tok && rc == 0; tok = strtok(NULL, ",")) {
    long long n = atoll(tok);
    if (n < 1 || n > 0x7fffffff) {
      rc = FH_FAIL(FH_ERR_USAGE, "--labels: '%s' is not a row count in 1 .. 2^31-1", tok);
      break;
    }
    int64_t m = n / 6 > 0 ? n / 6 : 1;
    int32_t *y = fh_malloc((size_t)n * sizeof(int32_t)), *yt = fh_malloc((size_t)m * sizeof(int32_t));
    fh_rng r;
    fh_rng_init(&r, 7, FH_RNG_TEST, 0, 0);
    for (long long i = 0; i < n; i++) y[i] = (int32_t)fh_rng_below(&r, C);
    for (int64_t i = 0; i < m; i++) yt[i] = (int32_t)fh_rng_below(&r, C);
    for (size_t mi = 0; mi < sizeof bench_methods / sizeof bench_methods[0] && rc == 0; mi++) {
      int ns = nbase;
      for (int q = 0; q < 4 && bench_methods[mi].sets[q]; q++) sets[ns++] = bench_methods[mi].sets[q];
      fh_config *cfg = NULL;
      rc = fh_config_load(&cfg, deck, sets, ns, tables, nt);
      if (rc != 0) break;
      double best_train = 1e30, best_test = 1e30, cpu_train = 0, cpu_test = 0;
      fh_partition_stats st = {0};
      int err = 0;
      for (int rep = 0; rep < 3 && !err; rep++) {
        fh_client_rows tr = {0}, te = {0};
        double t0 = MPI_Wtime(), c0 = cpu_now();
        err = fh_partition_train(cfg, 1, y, n, C, K, NULL, &tr);
        double t1 = MPI_Wtime(), c1 = cpu_now();
        if (!err) err = fh_partition_test(cfg, 1, &tr, y, yt, m, C, NULL, &te);
        double t2 = MPI_Wtime(), c2 = cpu_now();
        if (!err) {
          if (t1 - t0 < best_train) {
            best_train = t1 - t0;
            cpu_train = c1 - c0;
          }
          if (t2 - t1 < best_test) {
            best_test = t2 - t1;
            cpu_test = c2 - c1;
          }
          if (rep == 0) {
            int64_t *cnt = fh_partition_counts(&tr, y, C);
            fh_partition_summarize(cnt, NULL, K, C, &st);
            free(cnt);
          }
        }
        fh_client_rows_free(&tr);
        fh_client_rows_free(&te);
      }
      if (err) {
        fh_info("  %-20s %9lld   not possible: %s", bench_methods[mi].name, n, fh_error_msg());
        fh_error_clear();
      } else {
        fh_info("  %-20s %9lld %7.3f (%7.3f) %7.3f (%7.3f)   %lld / %.1f / %lld", bench_methods[mi].name, n,
                best_train, cpu_train, best_test, cpu_test, (long long)st.train_min, st.train_mean,
                (long long)st.train_max);
      }
      fh_config_free(cfg);
    }
    free(y);
    free(yt);
  }
  free(sets);
  return rc;
}

int fh_cmd_partition(int argc, char **argv) {
  static const char *const opts[] = {"--out", "--clients", "--labels", NULL};
  const char *vals[3] = {NULL, NULL, NULL};
  int is_bench = 0;
  char **args = fh_calloc((size_t)argc + 1, sizeof(char *));
  int nargs = 0;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--bench") == 0) is_bench = 1;
    else args[nargs++] = argv[i];
  }
  fh_config *cfg = NULL;
  int rc = fh_load_config_from_args(nargs, args, 0, &cfg, opts, vals);
  if (rc != 0) {
    free(args);
    return rc;
  }
  if (!is_bench && !fh_cfg_deck_path(cfg)) {
    free(args);
    fh_config_free(cfg);
    return FH_FAIL(FH_ERR_USAGE, "no deck given: fedhpc partition DECK.ini [--set section.key=value ...] [--out FILE]");
  }
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) {
    if (is_bench) {
      long long K = 100000;
      if (vals[1]) { /* the range of run.clients */
        char *end = NULL;
        errno = 0;
        K = strtoll(vals[1], &end, 10);
        if (errno != 0 || end == vals[1] || *end != '\0' || K < 1 || K > 100000000) K = -1;
      }
      if (K < 1) rc = FH_FAIL(FH_ERR_USAGE, "--clients '%s' is not a client count in 1 .. 100000000", vals[1]);
      else rc = bench(nargs, args, fh_cfg_deck_path(cfg), (int)K, vals[2] ? vals[2] : "60000,6000000");
    } else {
      rc = partition_deck(cfg, vals[0]);
    }
  }
  free(args);
  fh_config_free(cfg);
  return fh_error_agree(MPI_COMM_WORLD, rc);
}

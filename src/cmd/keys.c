/* Every deck key fedhpc knows, gathered from the modules that own them. */
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"
#include "core/error.h"
#include "core/log.h"
#include "core/profile.h"
#include "data/augment.h"
#include "data/dataset.h"
#include "data/partition.h"
#include "fl/addon.h"
#include "fl/algorithm.h"
#include "fl/checkpoint.h"
#include "fl/evaluate.h"
#include "fl/client_state.h"
#include "fl/blocks/hetero.h"
#include "fl/blocks/local_sgd.h"
#include "fl/run.h"
#include "nn/model.h"

int fh_all_key_tables(const fh_key_spec **tables, int max) {
  fh_run_keys_prepare();
  int n = 0;
  tables[n++] = fh_run_keys;
  tables[n++] = fh_train_keys;
  tables[n++] = fh_model_keys;
  tables[n++] = fh_data_keys;
  tables[n++] = fh_partition_keys;
  tables[n++] = fh_augment_keys;
  tables[n++] = fh_profile_keys;
  tables[n++] = fh_state_keys;
  tables[n++] = fh_checkpoint_keys;
  tables[n++] = fh_eval_keys;
  tables[n++] = fh_encode_keys;
  tables[n++] = fh_hetero_keys;
  for (int i = 0; i < fh_addon_count() && n < max; i++)
    if (fh_addon_at(i)->keys) tables[n++] = fh_addon_at(i)->keys;
  for (int i = 0; i < fh_algorithm_count() && n < max; i++)
    if (fh_algorithm_at(i)->keys) tables[n++] = fh_algorithm_at(i)->keys;
  return n;
}

int fh_load_config_from_args(int argc, char **argv, int deck_required, fh_config **cfg,
                             const char *const *extra_opts, const char **extra_vals) {
  const char *deck = NULL;
  const char **sets = fh_calloc((size_t)argc + 1, sizeof(char *));
  int nsets = 0, rc = 0;
  for (int i = 0; i < argc && rc == 0; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--set") == 0 || strcmp(a, "-s") == 0) {
      if (i + 1 >= argc) rc = FH_FAIL(FH_ERR_USAGE, "%s needs a section.key=value argument", a);
      else sets[nsets++] = argv[++i];
      continue;
    }
    if (strncmp(a, "--set=", 6) == 0) {
      sets[nsets++] = a + 6;
      continue;
    }
    int matched = 0;
    for (int e = 0; extra_opts && extra_opts[e]; e++)
      if (strcmp(a, extra_opts[e]) == 0) {
        if (i + 1 >= argc) rc = FH_FAIL(FH_ERR_USAGE, "%s needs a value", a);
        else extra_vals[e] = argv[++i];
        matched = 1;
      }
    if (matched) continue;
    if (a[0] == '-') rc = FH_FAIL(FH_ERR_USAGE, "unknown option '%s' (see --help)", a);
    else if (deck) rc = FH_FAIL(FH_ERR_USAGE, "more than one deck given ('%s' and '%s')", deck, a);
    else deck = a;
  }
  if (rc == 0 && deck_required && !deck)
    rc = FH_FAIL(FH_ERR_USAGE, "no deck given: fedhpc run DECK.ini [--set section.key=value ...]");
  if (rc == 0) {
    const fh_key_spec *tables[64];
    int nt = fh_all_key_tables(tables, 64);
    rc = fh_config_load(cfg, deck, sets, nsets, tables, nt);
  }
  free(sets);
  return fh_error_agree(MPI_COMM_WORLD, rc);
}

int fh_cmd_help_keys(int argc, char **argv) {
  (void)argc;
  (void)argv;
  const fh_key_spec *tables[64];
  int nt = fh_all_key_tables(tables, 64);
  if (fh_log_rank() == 0) fh_config_print_help(tables, nt);
  return 0;
}

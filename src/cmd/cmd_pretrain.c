/* fedhpc pretrain DECK [--set section.key=value ...] [--resume] */
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"
#include "core/error.h"
#include "core/signals.h"
#include "fl/addons/pretrain.h"

int fh_cmd_pretrain(int argc, char **argv) {
  /* --resume takes no value: strip it before the deck parser sees it */
  int resume = 0, n = 0;
  char **args = fh_calloc((size_t)argc + 1, sizeof(char *));
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--resume") == 0) resume = 1;
    else args[n++] = argv[i];
  }
  fh_config *cfg = NULL;
  int rc = fh_load_config_from_args(n, args, 1, &cfg, NULL, NULL);
  free(args);
  if (rc != 0) return rc;
  fh_signals_install();
  rc = fh_pretrain(cfg, MPI_COMM_WORLD, resume);
  fh_config_free(cfg);
  return rc;
}

/* The CLI's commands (src/main.c dispatches): each takes the arguments after
 * its name and returns an fh_exit code. Collective over MPI_COMM_WORLD. */
#ifndef FH_COMMANDS_H
#define FH_COMMANDS_H

#include "core/config.h"

int fh_cmd_run(int argc, char **argv);
int fh_cmd_info(int argc, char **argv);
int fh_cmd_bench(int argc, char **argv);
int fh_cmd_partition(int argc, char **argv);
int fh_cmd_model(int argc, char **argv);
int fh_cmd_pretrain(int argc, char **argv);
int fh_cmd_help_keys(int argc, char **argv);
int fh_cmd_encode(int argc, char **argv);
int fh_cmd_check(int argc, char **argv);

/* Deck keys of fedhpc encode (src/cmd/cmd_encode.c). */
extern const fh_key_spec fh_encode_keys[];

/* Every registered key table: run, train, model, data, profile, algorithms. */
int fh_all_key_tables(const fh_key_spec **tables, int max);

/* Parses "[DECK] [--set k=v]..." (the deck is the first non-option argument);
 * loads the config on every rank and agrees on errors. Unknown options are
 * FH_ERR_USAGE naming them. extra_opts lists other flags the command accepts
 * that take a value (NULL-terminated); their values come back in extra_vals. */
int fh_load_config_from_args(int argc, char **argv, int deck_required, fh_config **cfg,
                             const char *const *extra_opts, const char **extra_vals);

#endif

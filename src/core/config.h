/* Decks: INI files (libinih) plus `--set section.key=value` overrides.
 *
 * Every key is declared once, by the module that reads it, in a table of
 * fh_key_spec (type, default, valid range or choices, one-line help). The loader
 * checks the deck against all registered tables: an unknown section or key, a
 * wrong type or an out-of-range value is an FH_ERR_CONFIG error whose message
 * names the file, the line and the key, and the nearest valid key for a typo:
 *   "deck.ini:7: unknown key 'round' in section [run] (did you mean 'run.rounds'?)"
 * Keys are addressed by their full name "section.key".
 *
 * Deck rules: every key sits under its [section] (a key before the first section
 * is an error); a key given twice in one deck is an error (both lines are likely
 * meant, and only one can win); an indented line is a line of its own, never a
 * continuation; comments start a line with ';' or '#', or follow a value as
 * " ; ...". A deck line may hold at most 197 characters (libinih's limit); give
 * longer values with --set. Repeated --set of one key: the last one wins.
 * Values are trimmed; a value must be writable on one deck line (no control
 * characters, no ';' after whitespace), so that the dump reads back unchanged. */
#ifndef FH_CONFIG_H
#define FH_CONFIG_H

#include <stddef.h>
#include <stdio.h>

typedef enum {
  FH_T_INT,     /* 64-bit integer, range [min, max]                       */
  FH_T_REAL,    /* double, range [min, max]                               */
  FH_T_BOOL,    /* true/false, yes/no, on/off, 1/0                         */
  FH_T_STRING,  /* free text (paths, names)                               */
  FH_T_ENUM,    /* one of choices "a|b|c"                                  */
  FH_T_INTLIST, /* comma-separated integers, each in [min, max]; may be empty */
  FH_T_STRLIST  /* comma-separated words (e.g. PAPI event names); may be empty */
} fh_type;

typedef struct {
  const char *name;    /* "section.key"                                   */
  fh_type type;
  const char *dflt;    /* default, as it would be written in a deck        */
  double min, max;     /* FH_T_INT, FH_T_REAL, FH_T_INTLIST                */
  const char *choices; /* FH_T_ENUM: "fedavg|fedprox"                      */
  const char *help;    /* one line for `fedhpc help keys`                  */
} fh_key_spec;

/* A table of specs ends with an entry whose name is NULL. */
#define FH_KEYS_END {NULL, FH_T_INT, NULL, 0, 0, NULL, NULL}

typedef struct fh_config fh_config;

/* Builds a config from the registered tables' defaults, then the deck at `path`
 * (NULL: defaults only), then each "section.key=value" in sets[0..nsets).
 * Returns 0, or FH_ERR_CONFIG with the message in fh_error_msg() and *out NULL.
 * NULL entries of tables are skipped, and a table passed twice counts once; a
 * name declared by two tables, a malformed spec or a default that fails its own
 * check aborts the process (a programming error). */
int fh_config_load(fh_config **out, const char *path, const char *const *sets, int nsets,
                   const fh_key_spec *const *tables, int ntables);
void fh_config_free(fh_config *cfg);

/* Typed getters. The key must be registered with that type (a programming error
 * otherwise: the process aborts naming the key). */
long long fh_cfg_int(const fh_config *cfg, const char *name);
double fh_cfg_real(const fh_config *cfg, const char *name);
int fh_cfg_bool(const fh_config *cfg, const char *name);
const char *fh_cfg_str(const fh_config *cfg, const char *name); /* STRING and ENUM */
/* ENUM: the value's 0-based position in the key's choices ("a|b|c": b is 1). */
int fh_cfg_enum(const fh_config *cfg, const char *name);
/* INTLIST: copies up to max values, returns how many the list holds. */
int fh_cfg_intlist(const fh_config *cfg, const char *name, long long *out, int max);
/* STRLIST: returns the count; *items points into cfg (valid until free). */
int fh_cfg_strlist(const fh_config *cfg, const char *name, const char *const **items);
/* Where a key's value came from: "default", "deck.ini:12" or "--set". */
const char *fh_cfg_origin(const fh_config *cfg, const char *name);
const char *fh_cfg_deck_path(const fh_config *cfg); /* NULL when no deck */

/* The fully resolved configuration as INI text (every key, sections in table
 * order), newly allocated; written into the run's outputs. */
char *fh_config_dump(const fh_config *cfg);

/* The "section.key" = value pairs of a text fh_config_dump wrote (a run's
 * config.ini, a checkpoint's config attribute), in order; returns how many.
 * fh_config_pairs_get: the value of key, NULL when absent. */
typedef struct {
  char *key; /* "section.key" */
  char *val;
} fh_cfg_pair;
int fh_config_pairs(const char *text, fh_cfg_pair **out);
void fh_config_pairs_free(fh_cfg_pair *pairs, int n);
const char *fh_config_pairs_get(const fh_cfg_pair *pairs, int n, const char *key);

/* `fedhpc help keys`: every key with type, default, range and help, on stdout. */
void fh_config_print_help(const fh_key_spec *const *tables, int ntables);
/* The same text, to any stream. */
void fh_config_write_help(FILE *out, const fh_key_spec *const *tables, int ntables);

#endif

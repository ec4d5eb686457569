/* The declared experiments of `bwt reproduce`: each grid is a list of cells (a task and model to
 * train, as `bwt train` flags per preset), each cell evaluated once or more (a row of the table
 * each), beside the figure the papers report (SPEC.md §7). */
#ifndef BWT_CLI_REPRODUCE_H
#define BWT_CLI_REPRODUCE_H

#define REPRO_MAX_EVALS 3

/* The recipes a cell can be trained with: cpu (the default: the papers' accuracy on a 2-core CPU,
 * from the search in experiments/), quick (small models, minutes) and paper (the papers' sizes). */
typedef enum { REPRO_CPU, REPRO_QUICK, REPRO_PAPER, REPRO_N_PRESETS } repro_preset;
extern const char *const repro_preset_names[REPRO_N_PRESETS];
/* The preset named s, or -1. */
int repro_preset_parse(const char *s);

typedef struct {
  const char *eval_flags; /* task overrides for this evaluation ("" = as trained), e.g. "--K 50" */
  const char *label;      /* the row's name in the table, e.g. "K=50" */
  const char *reported;   /* the papers' figure, or "" */
} repro_eval;

typedef struct {
  const char *experiment; /* the table's group, e.g. "bijection V=20" */
  const char *name;       /* directory of its runs, e.g. "bijection_transformer" */
  /* bwt train flags per preset; NULL where the cell is not part of the preset. "--init-from @CELL"
   * starts from the same seed's run of an earlier cell of the grid (a curriculum). */
  const char *flags[REPRO_N_PRESETS];
  repro_eval evals[REPRO_MAX_EVALS];
  int stage; /* a curriculum stage: it prepares a later cell and is no recipe of its own */
} repro_cell;

typedef struct {
  const char *name;
  const char *summary;
  const repro_cell *cells;
  int n_cells;
} repro_grid;

/* The first cell of any grid, not a curriculum stage, whose flags for `preset` train task `task`
 * with arch `arch` (bwt train --preset takes its recipe from there), or NULL. */
const repro_cell *repro_find_cell(repro_preset preset, const char *task, const char *arch);

/* The grids by name (paper1, boundary); NULL for an unknown name. */
const repro_grid *repro_find_grid(const char *name);
extern const repro_grid repro_grids[];
extern const int repro_n_grids;

#endif

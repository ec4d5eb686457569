/* bwt ablate: remove each head, attention branch, MLP branch and block of a transformer in turn and
 * measure the change against the exact posterior (SPEC.md §5). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/lab/ablate.h"
#include "bwt/checkpoint.h"
#include "commands.h"
#include "options.h"
#include "progress.h"

static void progress(void *ctx, int i, int n) { progress_count("ablate: evaluation", i, n, ""); }

static void print_ablation(const bwt_ablation *a) {
  printf("intact: entropy MAE %.5f bits, KL %.5f bits\n\n", a->base_mae, a->base_kl);
  printf("rise in entropy MAE (bits) when a component is removed\n%6s", "layer");
  for (int h = 0; h < a->NH; h++) printf("   head %-2d", h);
  printf(" %10s %10s %10s\n", "attention", "mlp", "block");
  for (int l = 0; l < a->L; l++) {
    printf("%6d", l);
    for (int h = 0; h < a->NH; h++) printf(" %+9.4f", a->head_dmae[l * a->NH + h]);
    for (int b = 0; b < BWT_ABLATE_BRANCHES; b++) {
      double d = a->branch_dmae[l * BWT_ABLATE_BRANCHES + b];
      if (isnan(d)) printf(" %10s", "n/a"); /* Mamba has no attention or MLP branch */
      else printf(" %+10.4f", d);
    }
    printf("\n");
  }
  if (a->NH == 0) return; /* no heads: Mamba's blocks only */
  int c = a->critical_layer * a->NH + a->critical_head;
  printf("\nmost critical head: layer %d head %d (+%.4f bits MAE, +%.4f bits KL), %.0f%% of the heads' damage;"
         " %d head(s) carry 80%% of it\n",
         a->critical_layer, a->critical_head, a->head_dmae[c], a->head_dkl[c], 100 * a->top_share, a->heads_for_80);
}

int cmd_ablate(int argc, char **argv) {
  int n_seqs = 500, batch = 128, threads = 0, no_figures = 0;
  uint64_t seed = 0x5eed;
  char out[OPT_STRING_MAX] = "";
  cli_option opts[] = {
      {"seqs", OPT_INT, &n_seqs, "held-out sequences per evaluation"},
      {"batch", OPT_INT, &batch, "sequences per forward pass"},
      {"seed", OPT_U64, &seed, "held-out stream seed"},
      {"out", OPT_STRING, out, "output directory (default RUN_DIR/ablate)"},
      {"no-figures", OPT_FLAG, &no_figures, "write JSON and CSV only"},
      threads_option(&threads, NULL),
  };
  cli_spec spec = {"ablate", "CHECKPOINT|RUN_DIR [options]",
                   "Removes one component of a transformer at a time: each head (its attention weights masked),\n"
                   "each block's attention branch, its MLP branch and the whole block (of a Mamba: each block,\n"
                   "its mixer bypassed; the other columns n/a). Reports the change in\n"
                   "entropy MAE and KL against the exact posterior, the most critical head and how concentrated\n"
                   "the damage is. Writes ablation.json, ablation.csv and a heatmap (PNG and SVG).",
                   opts, (int)(sizeof opts / sizeof *opts), 1, 1};
  const char *pos[1];
  int npos = 0, rc = cli_parse(&spec, argc, argv, pos, &npos);
  if (rc) return rc == 1 ? 0 : rc;
  if (n_seqs < 1 || batch < 1 || threads < 0) {
    fprintf(stderr, "bwt ablate: --seqs and --batch must be >= 1, --threads >= 0\n");
    return 2;
  }
  bwt_run run;
  if (bwt_run_open(&run, pos[0], threads, 0) != BWT_STATUS_OK) return cli_error("ablate");
  char outdir[4096 + 16];
  output_dir(outdir, sizeof outdir, out, run.dir, "ablate");
  bwt_ablation a;
  memset(&a, 0, sizeof a);
  bwt_status s = bwt_ablate(run.model, run.task, seed, n_seqs, batch, &a, progress, NULL);
  char file[4096 + 32];
  if (s == BWT_STATUS_OK) {
    print_ablation(&a);
    s = write_output(outdir, "ablation.json", bwt_ablation_to_json(&a));
  }
  if (s == BWT_STATUS_OK) {
    snprintf(file, sizeof file, "%s/ablation.csv", outdir);
    s = bwt_ablation_write_csv(file, &a);
  }
  if (s == BWT_STATUS_OK && !no_figures) s = bwt_ablation_figure(&a, outdir);
  if (s == BWT_STATUS_OK) printf("wrote %s/ablation.json, ablation.csv%s\n", outdir, no_figures ? "" : " and ablation.{png,svg}");
  rc = s == BWT_STATUS_OK ? 0 : cli_error("ablate");
  bwt_ablation_free(&a);
  bwt_run_close(&run);
  return rc;
}

/* The grids of `bwt reproduce`, with the figures the papers report (SPEC.md §7), and the recipes of
 * `bwt train --preset`: each cell's flags per preset.
 *
 * --preset cpu (the default) is the recipe search's result (experiments/README.md): the papers'
 * accuracy on a 2-core machine, 0.5-2 hours per transformer cell and seed there. Its transformers
 * are the papers' own script's model (no attention biases, PyTorch's initialisation; the
 * bijection's head tied to the embedding), recall is trained through a curriculum of runs, and all
 * train without weight decay: decay biases the bijection's posterior entropy upwards (it keeps the
 * logits of revealed values from going far enough down), which set a floor of 0.027 bits under the
 * authors' recipe. --preset quick fits a 2-core machine in under 30 minutes with 3 seeds: small models
 * (d 64), 3000 steps (1500 for the flat baselines, which reach their plateau early). --preset paper
 * uses the papers' sizes and 50k steps (days on a CPU; a GPU or many machines are the place for it).
 * The quick and paper HMM models allocate learned positions up to K = 50 (--max-T 153) so that the
 * model trained at K = 20 can be evaluated at K = 30 and 50: the rows past K = 20 are untrained. The
 * cpu HMM model uses sinusoidal positions, which PyTorch's N(0, 1) embeddings match in scale. */
#include <stdio.h>
#include <string.h>

#include "options.h"
#include "reproduce.h"

#define QUICK "--steps 3000 --batch 64 --lr 1e-3 --warmup 300 --eval-seqs 1000 --ckpt-every 500"
#define PAPER "--steps 50000 --batch 256 --lr 3e-4 --warmup 2000 --eval-seqs 2000 --ckpt-every 1000 --eval-every 5000"
#define SMALL_T "--d-model 64 --layers 2 --heads 4"
#define BIG_T "--d-model 192 --layers 6 --heads 6"
#define HMM "--task hmm --K 20 --max-T 153 --soft-targets"
#define QUICK_FLAT "--steps 1500 --batch 64 --lr 1e-3 --warmup 150 --eval-seqs 1000 --ckpt-every 500"
#define RECALL_QUICK "--task recall --pairs 16 --queries 3 --fillers 8 --key-vocab 64 --value-vocab 64"
/* The cpu preset: the reference script's transformer, AdamW without weight decay, cosine to 0. */
#define CPU_T "--init torch --tied-head --no-attn-bias"
#define CPU_RUN "--weight-decay 0 --min-lr-frac 0 --warmup 1000 --batch 64 --eval-seqs 2000 --ckpt-every 2000"
#define CPU_BIJECTION "--task bijection " SMALL_T " " CPU_T " " CPU_RUN " --lr 1e-3 --steps 100000 --eval-every 10000"
#define CPU_HMM "--task hmm --K 20 --soft-targets --positions sinusoidal --init torch --no-attn-bias " CPU_RUN
#define CPU_RECALL "--task recall --positions sinusoidal " SMALL_T " --init torch --no-attn-bias " CPU_RUN " --lr 1e-3"
#define CPU_RECALL_STAGE "--warmup 200 --steps 2000 --eval-every 400"
#define CPU_FLAT "--init torch " CPU_RUN " --lr 1e-3 --steps 3000"
#define HMM_EVALS(model, k20, k30, k50) \
  {{"", model ", K=20", k20}, {"--K 30", model ", K=30", k30}, {"--K 50", model ", K=50", k50}}

/* Recipes {cpu, quick, paper} that several grids share. */
#define BIJECTION_T {CPU_BIJECTION, "--task bijection " SMALL_T " " QUICK, "--task bijection " BIG_T " " PAPER}
#define BIJECTION_LSTM                                                                                             \
  {"--task bijection --arch lstm --d-model 128 --layers 2 --init torch " CPU_RUN " --lr 2e-3 --steps 20000 --eval-every 5000", \
   "--task bijection --arch lstm --d-model 64 --layers 2 " QUICK, "--task bijection --arch lstm --d-model 192 --layers 2 " PAPER}
#define BIJECTION_FLAT(arch)                                                                        \
  {"--task bijection --arch " arch " --d-model 64 --layers 4 " CPU_FLAT,                             \
   "--task bijection --arch " arch " --d-model 64 --layers 4 " QUICK_FLAT, "--task bijection --arch " arch " --d-model 192 --layers 9 " PAPER}
#define HMM_T                                                                                                  \
  {CPU_HMM " --d-model 64 --layers 4 --heads 4 --lr 1e-3 --steps 40000 --eval-every 4000", HMM " " SMALL_T " " QUICK, \
   HMM " --d-model 256 --layers 9 --heads 8 --steps 50000 --batch 64 --lr 3e-4 --warmup 1000 --eval-seqs 2000"}
#define HMM_LSTM                                                                                                   \
  {CPU_HMM " --arch lstm --d-model 128 --layers 2 --lr 2e-3 --steps 10000", HMM " --arch lstm --d-model 64 --layers 2 " QUICK, \
   HMM " --arch lstm --d-model 256 --layers 2 --steps 50000 --batch 64 --lr 3e-4 --warmup 1000 --eval-seqs 2000"}
#define HMM_FLAT(arch)                                                                                           \
  {CPU_HMM " --arch " arch " --d-model 64 --layers 4 --lr 1e-3 --steps 3000", HMM " --arch " arch " --d-model 64 --layers 4 " QUICK_FLAT, \
   HMM " --arch " arch " --d-model 256 --layers 9 " PAPER}
#define RECALL_LSTM                                                                                       \
  {"--task recall --arch lstm --d-model 128 --layers 2 --init torch " CPU_RUN " --lr 2e-3 --steps 10000", \
   RECALL_QUICK " --arch lstm --d-model 64 --layers 2 " QUICK, "--task recall --arch lstm --d-model 192 --layers 2 " PAPER}
/* The recall transformer's curriculum (cpu; see paper1) and its last cell. */
#define RECALL_T_CELLS(experiment, label, paper)                                                                        \
  {experiment, "recall_transformer_p8", {CPU_RECALL " --pairs 8 --queries 8 --fillers 4 " CPU_RECALL_STAGE, NULL, NULL}, \
   {{"", "transformer, curriculum stage: 8 pairs", ""}}, 1},                                                           \
  {experiment, "recall_transformer_p16",                                                                               \
   {CPU_RECALL " --pairs 16 --queries 8 --fillers 8 --init-from @recall_transformer_p8 " CPU_RECALL_STAGE, NULL, NULL}, \
   {{"", "transformer, curriculum stage: 16 pairs", ""}}, 1},                                                          \
  {experiment, "recall_transformer_p32",                                                                               \
   {CPU_RECALL " --pairs 32 --queries 8 --fillers 16 --init-from @recall_transformer_p16 " CPU_RECALL_STAGE, NULL, NULL}, \
   {{"", "transformer, curriculum stage: 32 pairs", ""}}, 1},                                                          \
  {experiment, "recall_transformer",                                                                                   \
   {CPU_RECALL " --init-from @recall_transformer_p32 --warmup 1000 --steps 10000 --eval-every 2000",                    \
    RECALL_QUICK " " SMALL_T " " QUICK, "--task recall " BIG_T " " PAPER},                                               \
   {{"", label, paper}}}

const char *const repro_preset_names[REPRO_N_PRESETS] = {"cpu", "quick", "paper"};

int repro_preset_parse(const char *s) {
  for (int i = 0; i < REPRO_N_PRESETS; i++)
    if (strcmp(s, repro_preset_names[i]) == 0) return i;
  return -1;
}

/* Cells: {experiment, directory, {cpu, quick, paper flags}, evaluations}. */
static const repro_cell paper1[] = {
    {"bijection V=20", "bijection_transformer", BIJECTION_T, {{"", "transformer", "0.007 (v1: 0.003)"}}},
    {"bijection V=20", "bijection_lstm", BIJECTION_LSTM, {{"", "LSTM", "0.009"}}},
    {"bijection V=20", "bijection_mlp", BIJECTION_FLAT("mlp"), {{"", "context-free MLP", "1.107 (analytic plateau)"}}},
    {"bijection V=20", "bijection_window_mlp", BIJECTION_FLAT("window_mlp"), {{"", "context-window MLP", ""}}},
    {"HMM S=5 O=5, trained at K=20", "hmm_transformer", HMM_T,
     HMM_EVALS("transformer", "7.5e-5 per position (v3: 0.049)", "≈0.012", "≈0.029")},
    {"HMM S=5 O=5, trained at K=20", "hmm_lstm", HMM_LSTM, HMM_EVALS("LSTM", "0.411", "", "")},
    {"HMM S=5 O=5, trained at K=20", "hmm_mlp", HMM_FLAT("mlp"), {{"", "context-free MLP, K=20", ""}}},
    {"HMM S=5 O=5, trained at K=20", "hmm_window_mlp", HMM_FLAT("window_mlp"), {{"", "context-window MLP, K=20", ""}}},
    /* cpu: a curriculum of 8, 16 and 32 pairs (8 queries each, 2000 steps), then the 64 pairs of the
     * task: 3 queries among 64 pairs give a small model too little signal to find the binding from
     * scratch (a plain run stays at chance after 30k steps). */
    RECALL_T_CELLS("associative recall (accuracy)", "transformer", "100%"),
    {"associative recall (accuracy)", "recall_lstm", RECALL_LSTM, {{"", "LSTM", "0.5%"}}},
};

/* The primitives table (Paper I's Table 1 across architectures): bijection posterior entropy error
 * (bits), HMM (bits; also evaluated at K = 30 and 50) and recall accuracy, for the transformer,
 * Mamba (Gu & Dao's and the repository's simplified block, whose numbers the papers report), LSTM and
 * both MLPs. Mamba's recipes (the reference block, bwt's default init) follow the
 * LSTM's: d 64 with 2 layers on 2 cores (the scan makes a Mamba step several times a transformer's
 * of the same width), the authors' sizes (d 192 × 6; HMM d 256 × 9) for --preset paper. The flat
 * MLPs see no context in recall (their accuracy is chance: 1/64). */
#define CPU_MAMBA "--arch mamba --d-model 64 --layers 2 " CPU_RUN " --lr 1e-3 --steps 10000 --eval-every 2000"
#define QUICK_MAMBA "--arch mamba --d-model 64 --layers 2 " QUICK_FLAT
/* The repository's simplified Mamba, whose numbers the papers report (its bijection model ties the
 * head; both use LayerNorm). */
#define SIMPLIFIED " --ssm-variant simplified --norm layer"
#define RECALL_FLAT(arch)                                                                                      \
  {"--task recall --positions sinusoidal --arch " arch " --d-model 64 --layers 4 " CPU_FLAT,                   \
   RECALL_QUICK " --arch " arch " --d-model 64 --layers 4 " QUICK_FLAT, "--task recall --arch " arch " --d-model 192 --layers 9 " PAPER}
static const repro_cell primitives[] = {
    {"bijection V=20 (bits)", "bijection_transformer", BIJECTION_T, {{"", "transformer", "0.007"}}},
    {"bijection V=20 (bits)", "bijection_mamba",
     {"--task bijection " CPU_MAMBA, "--task bijection " QUICK_MAMBA, "--task bijection --arch mamba --d-model 192 --layers 6 " PAPER},
     {{"", "Mamba (Gu & Dao)", ""}}},
    {"bijection V=20 (bits)", "bijection_mamba_simplified",
     {"--task bijection " CPU_MAMBA SIMPLIFIED " --tied-head", "--task bijection " QUICK_MAMBA SIMPLIFIED " --tied-head",
      "--task bijection --arch mamba --d-model 192 --layers 6 " PAPER SIMPLIFIED " --tied-head"},
     {{"", "Mamba (repository's simplified)", "0.010"}}},
    {"bijection V=20 (bits)", "bijection_lstm", BIJECTION_LSTM, {{"", "LSTM", "0.009"}}},
    {"bijection V=20 (bits)", "bijection_mlp", BIJECTION_FLAT("mlp"), {{"", "context-free MLP", "1.85"}}},
    {"bijection V=20 (bits)", "bijection_window_mlp", BIJECTION_FLAT("window_mlp"), {{"", "context-window MLP", ""}}},
    {"HMM S=5 O=5, trained at K=20 (bits)", "hmm_transformer", HMM_T, HMM_EVALS("transformer", "0.049", "", "")},
    {"HMM S=5 O=5, trained at K=20 (bits)", "hmm_mamba",
     {CPU_HMM " " CPU_MAMBA, HMM " " QUICK_MAMBA,
      HMM " --arch mamba --d-model 256 --layers 9 --steps 50000 --batch 64 --lr 3e-4 --warmup 1000 --eval-seqs 2000"},
     HMM_EVALS("Mamba (Gu & Dao)", "", "", "")},
    {"HMM S=5 O=5, trained at K=20 (bits)", "hmm_mamba_simplified",
     {CPU_HMM " " CPU_MAMBA SIMPLIFIED, HMM " " QUICK_MAMBA SIMPLIFIED,
      HMM " --positions none --arch mamba --d-model 256 --layers 9 --steps 50000 --batch 64 --lr 3e-4 --warmup 1000 --eval-seqs 2000" SIMPLIFIED},
     HMM_EVALS("Mamba (repository's simplified)", "0.024", "", "")},
    {"HMM S=5 O=5, trained at K=20 (bits)", "hmm_lstm", HMM_LSTM, HMM_EVALS("LSTM", "0.411", "", "")},
    {"HMM S=5 O=5, trained at K=20 (bits)", "hmm_mlp", HMM_FLAT("mlp"), HMM_EVALS("context-free MLP", "—", "", "")},
    {"HMM S=5 O=5, trained at K=20 (bits)", "hmm_window_mlp", HMM_FLAT("window_mlp"), HMM_EVALS("context-window MLP", "", "", "")},
    RECALL_T_CELLS("associative recall (accuracy)", "transformer", "100%"),
    {"associative recall (accuracy)", "recall_mamba",
     {"--task recall --positions sinusoidal " CPU_MAMBA, RECALL_QUICK " " QUICK_MAMBA,
      "--task recall --arch mamba --d-model 192 --layers 6 " PAPER},
     {{"", "Mamba (Gu & Dao)", ""}}},
    {"associative recall (accuracy)", "recall_mamba_simplified",
     {"--task recall --positions sinusoidal " CPU_MAMBA SIMPLIFIED, RECALL_QUICK " " QUICK_MAMBA SIMPLIFIED,
      "--task recall --arch mamba --d-model 192 --layers 6 " PAPER SIMPLIFIED},
     {{"", "Mamba (repository's simplified)", "97.8%"}}},
    {"associative recall (accuracy)", "recall_lstm", RECALL_LSTM, {{"", "LSTM", "0.5%"}}},
    {"associative recall (accuracy)", "recall_mlp", RECALL_FLAT("mlp"), {{"", "context-free MLP", "—"}}},
    {"associative recall (accuracy)", "recall_window_mlp", RECALL_FLAT("window_mlp"), {{"", "context-window MLP", ""}}},
};

/* cpu: 30k steps at batch 128, then 5000 steps at batch 256 and lr 5e-5 from its weights (a second
 * run: the first run's cosine ends at 0.0157 bits, and the second's larger batch and small steps
 * take the two positions where the program is still uncertain, 2 and 3, below 0.014). */
#define CPU_MODULAR "--init torch --no-attn-bias --d-model 128 --layers 3 --heads 4 " CPU_RUN " --batch 128 --lr 1e-3 --steps 30000 --eval-every 5000"
#define CPU_MODULAR_FINISH "--init torch --no-attn-bias --d-model 128 --layers 3 --heads 4 " CPU_RUN " --batch 256 --lr 5e-5 --warmup 100 --steps 5000 --eval-every 1000"
#define MODULAR_CELLS(name, flags, label, paper)                                                          \
  {"modular recurrence p=17 (π experiment)", name "_stage1",                                             \
   {"--task modular " flags " " CPU_MODULAR, NULL, NULL}, {{"", label ", first run", ""}}, 1}, \
  {"modular recurrence p=17 (π experiment)", name,                                                       \
   {"--task modular " flags " " CPU_MODULAR_FINISH " --init-from @" name "_stage1",                        \
    "--task modular " flags " " SMALL_T " " QUICK, "--task modular " flags " " BIG_T " " PAPER},         \
   {{"", label, paper}}}
static const repro_cell boundary[] = {
    MODULAR_CELLS("modular_integer", "", "integer tokens", "0.014"),
    MODULAR_CELLS("modular_opaque", "--opaque", "opaque tokens", "0.83"),
    MODULAR_CELLS("modular_horizon8", "--loss-horizon 8", "integer, loss on positions 1-8 only", ""),
};

/* Seed 000's Theorem 3 in the wind tunnels (issue 18): the same recipe trained with cross-entropy,
 * the squared error of the predicted distribution and REINFORCE, and the cross-entropy model
 * fine-tuned with each of the others (the seed's RLHF scenario: a quarter of the steps, lr / 3). */
#define LOSS_CELLS(row, name, cpu, quick, paper, tune_cpu, tune_quick, tune_paper)                                       \
  {row, name "_ce", {cpu, quick, paper}, {{"", "cross-entropy", ""}}},                                                     \
  {row, name "_mse", {cpu " --loss mse", quick " --loss mse", paper " --loss mse"}, {{"", "squared error", ""}}},        \
  {row, name "_pg", {cpu " --loss policy-gradient", quick " --loss policy-gradient", paper " --loss policy-gradient"},   \
   {{"", "policy gradient", ""}}},                                                                                         \
  {row, name "_ce_then_mse",                                                                                               \
   {cpu " " tune_cpu " --loss mse --init-from @" name "_ce", quick " " tune_quick " --loss mse --init-from @" name "_ce",   \
    paper " " tune_paper " --loss mse --init-from @" name "_ce"},                                                           \
   {{"", "cross-entropy, then squared error", ""}}},                                                                       \
  {row, name "_ce_then_pg",                                                                                                \
   {cpu " " tune_cpu " --loss policy-gradient --init-from @" name "_ce",                                                   \
    quick " " tune_quick " --loss policy-gradient --init-from @" name "_ce",                                               \
    paper " " tune_paper " --loss policy-gradient --init-from @" name "_ce"},                                              \
   {{"", "cross-entropy, then policy gradient", ""}}}
#define TUNE_QUICK "--steps 750 --warmup 75 --lr 3e-4"
#define TUNE_PAPER "--steps 12500 --warmup 500 --lr 1e-4"
static const repro_cell losses[] = {
    LOSS_CELLS("bijection V=20 (bits)", "bijection", CPU_BIJECTION " --steps 20000", "--task bijection " SMALL_T " " QUICK,
               "--task bijection " BIG_T " " PAPER, "--steps 5000 --warmup 250 --lr 3e-4", TUNE_QUICK, TUNE_PAPER),
    LOSS_CELLS("HMM S=5 O=5, K=20 (bits)", "hmm", CPU_HMM " --d-model 64 --layers 4 --heads 4 --lr 1e-3 --steps 10000",
               HMM " " SMALL_T " " QUICK, HMM " --d-model 256 --layers 9 --heads 8 " PAPER,
               "--steps 2500 --warmup 250 --lr 3e-4", TUNE_QUICK, TUNE_PAPER),
};

/* Seed 000's Corollary 2 in the wind tunnels (issue 18): the same transformer with its MLPs dense
 * and as 4 experts with top-1 and top-2 routing, of equal active MLP parameters (docs/moe.md:
 * --expert-hidden defaults to 4·d_model/k). */
#define MOE_CELLS(row, name, cpu, quick, paper)                                                                         \
  {row, name "_dense", {cpu, quick, paper}, {{"", "dense MLP", ""}}},                                                  \
  {row, name "_moe_top1", {cpu " --experts 4", quick " --experts 4", paper " --experts 8"},                           \
   {{"", "mixture of experts, top-1", ""}}},                                                                           \
  {row, name "_moe_top2", {cpu " --experts 4 --expert-top-k 2", quick " --experts 4 --expert-top-k 2",                \
                           paper " --experts 8 --expert-top-k 2"},                                                     \
   {{"", "mixture of experts, top-2", ""}}}
static const repro_cell moe[] = {
    MOE_CELLS("bijection V=20 (bits)", "bijection", CPU_BIJECTION " --steps 20000", "--task bijection " SMALL_T " " QUICK,
              "--task bijection " BIG_T " " PAPER),
    MOE_CELLS("HMM S=5 O=5, K=20 (bits)", "hmm", CPU_HMM " --d-model 64 --layers 4 --heads 4 --lr 1e-3 --steps 10000",
              HMM " " SMALL_T " " QUICK, HMM " --d-model 256 --layers 9 --heads 8 " PAPER),
};

const repro_grid repro_grids[] = {
    {"paper1", "Paper I: bijection and HMM for transformer, LSTM and both MLPs; HMM length generalisation; recall",
     paper1, (int)(sizeof paper1 / sizeof paper1[0])},
    {"primitives", "the primitives table: bijection, HMM (K=20, 30, 50) and recall for transformer, Mamba, LSTM and both MLPs",
     primitives, (int)(sizeof primitives / sizeof primitives[0])},
    {"losses", "seed 000's loss uniqueness: cross-entropy, squared error and policy gradient on the bijection and the HMM, and fine-tunes from cross-entropy",
     losses, (int)(sizeof losses / sizeof losses[0])},
    {"moe", "seed 000's mixture-of-experts claim: dense MLPs against 4 experts with top-1 and top-2 routing at equal active parameters",
     moe, (int)(sizeof moe / sizeof moe[0])},
    {"boundary", "the construction boundary: modular recurrence with integer and opaque tokens, and a loss horizon",
     boundary, (int)(sizeof boundary / sizeof boundary[0])},
};
const int repro_n_grids = (int)(sizeof repro_grids / sizeof repro_grids[0]);

const repro_grid *repro_find_grid(const char *name) {
  for (int i = 0; i < repro_n_grids; i++)
    if (strcmp(repro_grids[i].name, name) == 0) return &repro_grids[i];
  return NULL;
}

/* The value of --NAME in a cell's flags into out ("" if absent). */
static void flag_value(const char *flags, const char *name, char out[64]) {
  char key[64];
  snprintf(key, sizeof key, "--%s ", name);
  const char *at = strstr(flags, key);
  out[0] = '\0';
  if (at) sscanf(at + strlen(key), "%63s", out);
}

const repro_cell *repro_find_cell(repro_preset preset, const char *task, const char *arch) {
  for (int g = 0; g < repro_n_grids; g++)
    for (int i = 0; i < repro_grids[g].n_cells; i++) {
      const repro_cell *c = &repro_grids[g].cells[i];
      if (!c->flags[preset] || c->stage) continue;
      char t[64], a[64];
      flag_value(c->flags[preset], "task", t);
      flag_value(c->flags[preset], "arch", a);
      if (strcmp(t, task) == 0 && strcmp(*a ? a : "transformer", arch) == 0) return c;
    }
  return NULL;
}

/* The grids of `bwt reproduce`, with the figures the papers report (SPEC.md §7).
 *
 * --preset quick fits a 2-core machine in under 30 minutes with 3 seeds: small models (d 64),
 * 3000 steps (1500 for the flat baselines, which reach their plateau early). --preset paper uses the papers' sizes and 50k steps (days on a CPU; a GPU or many
 * machines are the place for it). The HMM models allocate learned positions up to K = 50
 * (--max-T 153) so that the model trained at K = 20 can be evaluated at K = 30 and 50: the rows
 * past K = 20 are untrained (their N(0, 0.02) initial values, shrunk by weight decay). Sinusoidal
 * positions, at their usual unit scale against embeddings of scale 0.02, kept the small quick models
 * from learning the HMM at all in 3000 steps (0.42 bits, the context-free level). */
#include <string.h>

#include "reproduce.h"

#define QUICK "--steps 3000 --batch 64 --lr 1e-3 --warmup 300 --eval-seqs 1000 --ckpt-every 500"
#define PAPER "--steps 50000 --batch 256 --lr 3e-4 --warmup 2000 --eval-seqs 2000 --ckpt-every 1000"
#define SMALL_T "--d-model 64 --layers 2 --heads 4"
#define BIG_T "--d-model 192 --layers 6 --heads 6"
#define HMM "--task hmm --K 20 --max-T 153 --soft-targets"
#define QUICK_FLAT "--steps 1500 --batch 64 --lr 1e-3 --warmup 150 --eval-seqs 1000 --ckpt-every 500"
#define RECALL_QUICK "--task recall --pairs 16 --queries 3 --fillers 8 --key-vocab 64 --value-vocab 64"
#define HMM_EVALS(model, k20, k30, k50) \
  {{"", model ", K=20", k20}, {"--K 30", model ", K=30", k30}, {"--K 50", model ", K=50", k50}}

static const repro_cell paper1[] = {
    {"bijection V=20", "bijection_transformer", "--task bijection " SMALL_T " " QUICK,
     "--task bijection --preset paper", {{"", "transformer", "0.007 (v1: 0.003)"}}},
    {"bijection V=20", "bijection_lstm", "--task bijection --arch lstm --d-model 64 --layers 2 " QUICK,
     "--task bijection --arch lstm --d-model 192 --layers 2 " PAPER, {{"", "LSTM", "0.009"}}},
    {"bijection V=20", "bijection_mlp", "--task bijection --arch mlp --d-model 64 --layers 4 " QUICK_FLAT,
     "--task bijection --arch mlp --d-model 192 --layers 9 " PAPER, {{"", "context-free MLP", "1.107 (analytic plateau)"}}},
    {"bijection V=20", "bijection_window_mlp", "--task bijection --arch window_mlp --d-model 64 --layers 4 " QUICK_FLAT,
     "--task bijection --arch window_mlp --d-model 192 --layers 9 " PAPER, {{"", "context-window MLP", ""}}},
    {"HMM S=5 O=5, trained at K=20", "hmm_transformer", HMM " " SMALL_T " " QUICK,
     HMM " --d-model 256 --layers 9 --heads 8 --steps 50000 --batch 64 --lr 3e-4 --warmup 1000 --eval-seqs 2000",
     HMM_EVALS("transformer", "7.5e-5 per position (v3: 0.049)", "≈0.012", "≈0.029")},
    {"HMM S=5 O=5, trained at K=20", "hmm_lstm", HMM " --arch lstm --d-model 64 --layers 2 " QUICK,
     HMM " --arch lstm --d-model 256 --layers 2 --steps 50000 --batch 64 --lr 3e-4 --warmup 1000 --eval-seqs 2000",
     HMM_EVALS("LSTM", "0.411", "", "")},
    {"HMM S=5 O=5, trained at K=20", "hmm_mlp", HMM " --arch mlp --d-model 64 --layers 4 " QUICK_FLAT,
     HMM " --arch mlp --d-model 256 --layers 9 " PAPER, {{"", "context-free MLP, K=20", ""}}},
    {"HMM S=5 O=5, trained at K=20", "hmm_window_mlp", HMM " --arch window_mlp --d-model 64 --layers 4 " QUICK_FLAT,
     HMM " --arch window_mlp --d-model 256 --layers 9 " PAPER, {{"", "context-window MLP, K=20", ""}}},
    {"associative recall (accuracy)", "recall_transformer", RECALL_QUICK " " SMALL_T " " QUICK,
     "--task recall " BIG_T " " PAPER, {{"", "transformer", "100%"}}},
    {"associative recall (accuracy)", "recall_lstm", RECALL_QUICK " --arch lstm --d-model 64 --layers 2 " QUICK,
     "--task recall --arch lstm --d-model 192 --layers 2 " PAPER, {{"", "LSTM", "0.5%"}}},
};

static const repro_cell boundary[] = {
    {"modular recurrence p=17 (π experiment)", "modular_integer", "--task modular " SMALL_T " " QUICK,
     "--task modular " BIG_T " " PAPER, {{"", "integer tokens", "0.014"}}},
    {"modular recurrence p=17 (π experiment)", "modular_opaque", "--task modular --opaque " SMALL_T " " QUICK,
     "--task modular --opaque " BIG_T " " PAPER, {{"", "opaque tokens", "0.83"}}},
    {"modular recurrence p=17 (π experiment)", "modular_horizon8", "--task modular --loss-horizon 8 " SMALL_T " " QUICK,
     "--task modular --loss-horizon 8 " BIG_T " " PAPER, {{"", "integer, loss on positions 1-8 only", ""}}},
};

const repro_grid repro_grids[] = {
    {"paper1", "Paper I: bijection and HMM for transformer, LSTM and both MLPs; HMM length generalisation; recall",
     paper1, (int)(sizeof paper1 / sizeof paper1[0])},
    {"boundary", "the construction boundary: modular recurrence with integer and opaque tokens, and a loss horizon",
     boundary, (int)(sizeof boundary / sizeof boundary[0])},
};
const int repro_n_grids = (int)(sizeof repro_grids / sizeof repro_grids[0]);

const repro_grid *repro_find_grid(const char *name) {
  for (int i = 0; i < repro_n_grids; i++)
    if (strcmp(repro_grids[i].name, name) == 0) return &repro_grids[i];
  return NULL;
}

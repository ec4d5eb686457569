/* bwt sample: sequences with their exact posteriors as JSONL, for use from other frameworks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/eval.h"
#include "bwt/fileio.h"
#include "bwt/rng.h"
#include "bwt/sample_export.h"
#include "commands.h"
#include "options.h"

int cmd_sample(int argc, char **argv) {
  run_options o;
  run_options_default(&o);
  int count = 10, batch = 256, held_out = 0, train_step = -1;
  uint64_t seed = 1;
  char out[OPT_STRING_MAX] = "-";
  cli_option opts[RUN_OPTIONS_MAX];
  int n = task_options(opts, &o);
  opts[n++] = (cli_option){"n", OPT_INT, &count, "sequences to write"};
  opts[n++] = (cli_option){"seed", OPT_U64, &seed, "seed of the stream: sequence j is the rng stream (seed, j)"};
  opts[n++] = (cli_option){"held-out", OPT_FLAG, &held_out, "--seed is a run's eval-seed: write its held-out sequences 0..n-1, as bwt eval scores them"};
  opts[n++] = (cli_option){"train-step", OPT_INT, &train_step, "--seed is a run's seed: write the batch of this 1-based training step (its first n sequences)"};
  opts[n++] = (cli_option){"batch", OPT_INT, &batch, "sequences drawn at a time (memory only: the sequences do not depend on it)"};
  opts[n++] = (cli_option){"out", OPT_STRING, out, "output file, written atomically (- = standard output)"};
  cli_spec spec = {"sample", "[options]",
                   "Writes sequences of a wind tunnel as JSON lines: tokens, and for every supervised\n"
                   "position its index, the sampled target and the exact posterior over the classes.\n"
                   "Sequence j of seed S is a function of (S, j) alone, so bwt sample --held-out --seed E\n"
                   "gives exactly the held-out sequences of a run with eval-seed E, and --train-step t\n"
                   "--seed S the batch its step t trained on.",
                   opts, n, 0, 0};
  const char *pos[1];
  int npos = 0, rc = cli_parse(&spec, argc, argv, pos, &npos);
  if (rc) return rc == 1 ? 0 : rc;
  if (count < 1 || batch < 1 || (train_step != -1 && train_step < 1) || (held_out && train_step != -1)) {
    fprintf(stderr, "bwt sample: --n and --batch must be >= 1, --train-step >= 1, and --held-out and --train-step exclude each other\n");
    return 2;
  }
  if ((rc = task_options_check(&spec, &o, "sample"))) return rc;
  uint64_t stream = held_out ? bwt_eval_stream_seed(seed) : train_step > 0 ? bwt_train_batch_seed(seed, train_step) : seed;
  bwt_task *task = NULL;
  if (bwt_task_create(&task, &o.cfg.task) != BWT_STATUS_OK) return cli_error("sample") + 1; /* a bad command line */
  /* A file is built in memory and written atomically: a failed write leaves no partial file. */
  char *text = NULL;
  size_t text_len = 0;
  int to_stdout = strcmp(out, "-") == 0;
  FILE *f = to_stdout ? stdout : open_memstream(&text, &text_len);
  bwt_batch b;
  memset(&b, 0, sizeof b);
  bwt_status s = f ? bwt_batch_alloc(&b, task, batch < count ? batch : count) : bwt_fail(BWT_STATUS_NOMEM, "out of memory");
  for (int done = 0; s == BWT_STATUS_OK && done < count;) {
    int keep = count - done < b.B ? count - done : b.B, full = b.B;
    b.B = keep;
    s = bwt_task_sample_at(task, stream, (uint64_t)done, &b);
    if (s == BWT_STATUS_OK) s = bwt_batch_write_jsonl(f, task, &b, stream, done);
    b.B = full;
    done += keep;
  }
  if (to_stdout) {
    if (fflush(f) != 0 && s == BWT_STATUS_OK) s = bwt_fail(BWT_STATUS_IO, "cannot write to standard output: %s", strerror(errno));
  } else if (f) {
    if (fclose(f) != 0 && s == BWT_STATUS_OK) s = bwt_fail(BWT_STATUS_NOMEM, "out of memory formatting the sequences");
    if (s == BWT_STATUS_OK) s = bwt_write_file_atomic(out, text, text_len);
    free(text);
  }
  rc = s == BWT_STATUS_OK ? 0 : cli_error("sample");
  bwt_batch_free(&b);
  bwt_task_free(task);
  return rc;
}

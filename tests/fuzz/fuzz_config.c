/* libFuzzer harness for config.json parsing (bwt_run_config_from_json, src/train/config.c): run
 * directories, --resume and every checkpoint's metadata go through it. Any text must give either a
 * clean failure or a config that passes bwt_run_config_check and survives a round trip exactly:
 * its JSON, parsed back, gives a config whose JSON is byte-identical (no field lost, rounded or
 * defaulted differently on the way). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bwt/train.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  bwt_alloc_hooks_install();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1); /* the parser takes a C string */
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  bwt_run_config cfg, back;
  if (bwt_run_config_from_json(&cfg, text, "fuzz config.json") == BWT_STATUS_OK) {
    FUZZ_CHECK(bwt_run_config_check(&cfg) == BWT_STATUS_OK);
    char *first = bwt_run_config_to_json(&cfg);
    FUZZ_CHECK(first != NULL);
    FUZZ_CHECK(bwt_run_config_from_json(&back, first, "round trip") == BWT_STATUS_OK);
    char *second = bwt_run_config_to_json(&back);
    FUZZ_CHECK(second != NULL);
    if (strcmp(first, second) != 0) {
      fprintf(stderr, "round trip differs:\n--- first\n%s\n--- second\n%s\n", first, second);
      abort();
    }
    free(first);
    free(second);
  }
  free(text);
  return 0;
}

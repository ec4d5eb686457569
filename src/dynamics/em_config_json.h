/* The EM-vs-SGD configuration as JSON, shared by the reports of em and falsify (internal: cJSON). */
#ifndef BWT_DYNAMICS_EM_CONFIG_JSON_H
#define BWT_DYNAMICS_EM_CONFIG_JSON_H

#include <cjson/cJSON.h>

#include "bwt/lab/single_head.h"

cJSON *bwt_em_config_json(const bwt_em_config *c);

#endif

// The list of PEFT methods (peft/method.h): one row per method.
#include <stdio.h>
#include <string.h>
#include "peft/bitfit.h"
#include "peft/bottleneck.h"
#include "peft/ia3.h"
#include "peft/prefix_tuning.h"

static const dt_method *const METHODS[] = {&dt_method_lora, &dt_method_prompt, &dt_method_ia3, &dt_method_bottleneck,
                                           &dt_method_prefix, &dt_method_bitfit};
enum { N_METHODS = sizeof METHODS / sizeof METHODS[0] };

const dt_method *dt_method_by_peft_type(const char *peft_type) {
    for (int i = 0; peft_type && i < N_METHODS; i++)
        if (!strcmp(METHODS[i]->peft_type, peft_type)) return METHODS[i];
    return NULL;
}

void dt_method_peft_types(char *buf, size_t n) {
    size_t w = 0;
    buf[0] = 0;
    for (int i = 0; i < N_METHODS && w < n; i++) w += (size_t)snprintf(buf + w, n - w, "%s%s", i ? ", " : "", METHODS[i]->peft_type);
}

// A resume continues only its own run. A second run into an output_dir that holds an earlier run's
// checkpoints refuses to start (exit 2) unless --overwrite, which deletes them; resume: true refuses a
// checkpoint written with other recipe settings or other data, naming which, and changes nothing.
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include "tests/file_util.h"
#include "tests/test_util.h"

static char tmp[64];

// Runs deltatune train on the tiny recipe with extra arguments; returns the exit status, stderr in tmp/err.txt.
static int train(const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "./deltatune train tests/data/train/tiny.yaml output_dir=%s/run %s >%s/out.txt 2>%s/err.txt",
             tmp, args, tmp, tmp);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static bool err_has(const char *needle) {
    char path[256];
    snprintf(path, sizeof path, "%s/err.txt", tmp);
    char *s = tf_slurp(path, NULL);
    bool ok = s && strstr(s, needle);
    free(s);
    return ok;
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/dt_resume_id_%d", (int)getpid());
    mkdir(tmp, 0777);
    char adapter[256], saved[256], data[256], cmd[1024];
    snprintf(adapter, sizeof adapter, "%s/run/adapter_model.safetensors", tmp);
    snprintf(saved, sizeof saved, "%s/first.safetensors", tmp);
    snprintf(data, sizeof data, "%s/tokens.jsonl", tmp);
    snprintf(cmd, sizeof cmd, "cp tests/data/train/tokens.jsonl %s", data);
    if (system(cmd)) { TEST_FAIL("resume_id_setup", "cannot copy the data"); TEST_EXIT(); }
    char with_data[512];
    snprintf(with_data, sizeof with_data, "data.train=%s", data);

    // The first run: complete, with checkpoints at steps 4 and 8 left behind.
    int rc = train(with_data);
    snprintf(cmd, sizeof cmd, "cp %s %s", adapter, saved);
    if (rc || system(cmd)) { TEST_FAIL("resume_id_first_run", "exit %d", rc); TEST_EXIT(); }

    // A fresh run with another seed into the same folder: refused, the first adapter untouched.
    char args[1024];
    snprintf(args, sizeof args, "%s train.seed=8", with_data);
    rc = train(args);
    TEST_CHECK("fresh_run_refuses_old_checkpoints", rc == 2 && err_has("checkpoints of an earlier run") &&
                                                        err_has("--overwrite") && tf_same_file(adapter, saved),
               "exit %d (want 2 and a message naming --overwrite; the first adapter must stay)", rc);

    // Resuming with another seed: the checkpoint is the first run's, so resume refuses and says why.
    snprintf(args, sizeof args, "%s train.seed=8 resume=true", with_data);
    rc = train(args);
    TEST_CHECK("resume_refuses_other_recipe", rc == 2 && err_has("belongs to another run") &&
                                                  err_has("recipe's training settings differ") && tf_same_file(adapter, saved),
               "exit %d (want 2, the reason, and the first adapter untouched)", rc);

    // Resuming with the same recipe but edited data: refused, naming the data.
    FILE *f = fopen(data, "a");
    if (f) { fputs("{\"input_ids\": [1, 2, 3, 4, 5, 6]}\n", f); fclose(f); }
    snprintf(args, sizeof args, "%s resume=true", with_data);
    rc = train(args);
    TEST_CHECK("resume_refuses_other_data", rc == 2 && err_has("data files differ") && tf_same_file(adapter, saved),
               "exit %d (want 2 and the data named as the reason)", rc);

    // --overwrite: a fresh run that deletes the old checkpoints; interrupted and resumed, it finishes.
    snprintf(args, sizeof args, "--overwrite %s train.seed=8", with_data);
    snprintf(cmd, sizeof cmd, "DT_TEST_INTERRUPT_AFTER=6 ./deltatune train tests/data/train/tiny.yaml --overwrite output_dir=%s/run %s train.seed=8 >%s/out.txt 2>%s/err.txt",
             tmp, with_data, tmp, tmp);
    int st = system(cmd);
    char old_ck[256];
    snprintf(old_ck, sizeof old_ck, "%s/run/checkpoints/step-8", tmp);
    bool old_gone = access(old_ck, F_OK) != 0;
    snprintf(args, sizeof args, "%s train.seed=8 resume=true", with_data);
    rc = train(args);
    TEST_CHECK("overwrite_then_resume", WIFEXITED(st) && WEXITSTATUS(st) == 130 && old_gone && rc == 0 &&
                                            err_has("resuming from") && !tf_same_file(adapter, saved),
               "interrupted run: status %d, old step-8 %s; resume exit %d", st, old_gone ? "gone" : "still there", rc);

    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (!dt_test_failures) (void)!system(cmd);
    TEST_EXIT();
}

/* A lock-heavy task queue: ftsvm_for with one task per chunk, so that the
 * nodes take tasks a batch (one per thread) at a time under the library's
 * task lock. A task computes, stores the result in its slot and counts its
 * run there. Verified: every result right, every task run exactly once
 * (which ftsvm_for promises across failures too).
 *   taskq [tasks=2048] [work=2000] */
#include "app.h"

static long tasks, work;
static uint64_t *claims, *results;

static uint64_t compute(long task)
{
    uint64_t x = (uint64_t)task + 1;
    long i;

    for (i = 0; i < work; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
    }
    return x;
}

static void run_tasks(size_t first, size_t count, void *arg)
{
    size_t task;

    (void)arg;
    for (task = first; task < first + count; task++) {
        results[task] = compute((long)task);
        claims[task]++;
    }
}

int main(int argc, char **argv)
{
    double start, seconds;
    char size[32];
    int verified = 1;
    long i;

    app_name = "taskq";
    app_ok(ftsvm_init(&argc, &argv));
    tasks = app_arg(argc, argv, 1, 2048, 1, 1 << 22);
    work  = app_arg(argc, argv, 2, 2000, 0, 1 << 30);
    claims  = app_alloc((size_t)tasks * sizeof(uint64_t));
    results = app_alloc((size_t)tasks * sizeof(uint64_t));
    app_ok(ftsvm_barrier());
    start = app_now();
    app_ok(ftsvm_for((size_t)tasks, 1, run_tasks, NULL));
    seconds = app_now() - start;
    { /* every node verifies (app_finish) */
        for (i = 0; i < tasks; i++) {
            if (claims[i] != 1 || results[i] != compute(i)) {
                verified = 0;
                fprintf(stderr, "task %ld: %llu claims, result %s\n", i,
                        (unsigned long long)claims[i], results[i] == compute(i) ? "right" : "wrong");
                break;
            }
        }
    }
    snprintf(size, sizeof(size), "%ld/%ld", tasks, work);
    return app_finish(size, seconds, verified);
}

/* Built against an installed ftsvm only: prints its node id. */
#include <ftsvm.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    int status = ftsvm_init(&argc, &argv);

    if (status != FTSVM_OK) {
        fprintf(stderr, "consumer: %s\n", ftsvm_strerror(status));
        return 1;
    }
    printf("consumer node %d of %d\n", ftsvm_node(), ftsvm_nodes());
    return ftsvm_finalize() == FTSVM_OK ? 0 : 1;
}

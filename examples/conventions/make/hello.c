#include <stdio.h>

int main(void) {
    puts("hello from make");
    return 0;
}

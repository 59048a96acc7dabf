/* The smallest static `true`, the target of the exec loop. */
int main(void) { return 0; }

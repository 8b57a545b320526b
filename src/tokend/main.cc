#include "tokend/daemon.h"

int main(int argc, char** argv) { return tokend::RunDaemon(argc, argv); }

#include <iostream>

#include "tokenctl.h"

int main(int argc, char** argv) { return tokend::RunTokenctl(argc, argv, std::cout, std::cerr); }

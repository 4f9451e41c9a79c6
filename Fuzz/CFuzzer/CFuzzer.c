// Only the header matters: LLVMFuzzerRunDriver comes from compiler-rt when fuzzing.

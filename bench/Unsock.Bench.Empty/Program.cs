// Nothing of its own: the runtime's start and exit, as in every NativeAOT program.
return args.Length;

import CarbonStoreCLI

await runCommandLine(CarbonStoreCommand.self)

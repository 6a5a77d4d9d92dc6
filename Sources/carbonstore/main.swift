import CarbonStoreCLI

await CarbonStoreCommand.main()

import ArgumentParser
import CarbonStoreCLI

/// The package's test host: the `carbonstore` commands with the reliability tests' hooks, plus the
/// torture commands. Built beside the tests and never shipped; see TestHooks.
struct TestHostCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "carbonstore-testhost",
        abstract: "The carbonstore commands with test hooks (CARBONSTORE_TEST_*), and the torture test.",
        subcommands: CarbonStoreCommand.commands + [TortureCommand.self])
}

do {
    try TestHooks.install()
} catch {
    printError(String(describing: error))
    TestHostCommand.exit(withError: ExitCode(64))
}
await runCommandLine(TestHostCommand.self)

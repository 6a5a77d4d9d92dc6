import ArgumentParser
import CarbonModel
import CarbonStore

struct SavingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "saving", abstract: "Record savings achieved by actions.", subcommands: [Add.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add or replace (by id) a saving.")
        @OptionGroup var storage: StorageOptions
        @Argument(help: "The user id.") var user: String
        @Option(help: "Saving id, unique per user.") var id: String
        @Option(help: "The action that achieved it.") var action: String
        @Option(parsing: .unconditional, help: "Kilograms of CO2e saved, e.g. 3.5 (may be negative).")
        var kg: String
        @Option(
            parsing: .unconditional,
            help: "Money saved as a decimal, e.g. 4.20 (needs --currency; negative for a net cost).")
        var money: String?
        @Option(help: "Active ISO 4217 currency code of --money, e.g. EUR.") var currency: String?
        @Option(help: "Start of the period, ISO 8601.") var periodStart: String
        @Option(help: "End of the period, ISO 8601.") var periodEnd: String
        @Option(help: "When it was recorded, ISO 8601 (default: now).") var at: String?

        func run() async throws {
            try await runReportingErrors {
                var saved: Money?
                switch (money, currency) {
                case (nil, nil): saved = nil
                case (let m?, let c?):
                    do { saved = try Money(decimal: m, currency: try parseCurrency(c)) } catch let e
                        as ModelError
                    {
                        throw InvalidRequestError(e.description)
                    }
                default: throw InvalidRequestError("give --money and --currency together")
                }
                let saving = Saving(
                    id: id, actionID: action, co2e: try parseKilograms(kg), moneySaved: saved,
                    period: try parsePeriod(start: periodStart, end: periodEnd, required: true)!,
                    recordedAt: try parseTime(at))
                let store = try await storage.makeStore()
                let result = try await store.update(user) { record in record.upsert(saving) }
                report("saving \(shown(id)) of \(shown(user))", result.value, result)
            }
        }
    }
}

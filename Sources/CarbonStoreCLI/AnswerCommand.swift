import ArgumentParser
import CarbonModel
import CarbonStore

struct AnswerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "answer", abstract: "Record a user's answer to a question (replaces an earlier answer).")

    @OptionGroup var storage: StorageOptions
    @Argument(help: "The user id.") var user: String
    @Argument(help: "The question id.") var question: String
    @Argument(
        help:
            "The answer: true/false, a number, or text. Put -- before a negative number: answer USER Q -- -3."
    )
    var value: String
    @Flag(help: "Read the value as a comma-separated list of choices.") var choices = false
    @Option(help: "When it was answered, ISO 8601 (default: now).") var at: String?

    func run() async throws {
        try await runReportingErrors {
            let response = QuestionResponse(
                questionID: question, answer: Answer.parse(value, asChoices: choices),
                answeredAt: try parseTime(at))
            let store = try await storage.makeStore()
            let result = try await store.update(user) { record in record.answer(response) }
            report("answer to \(shown(question)) of \(shown(user))", result.value, result)
        }
    }
}

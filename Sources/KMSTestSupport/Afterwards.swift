/// Runs `body`, then awaits `cleanup`, whether `body` returned or threw, and returns or
/// rethrows what `body` did. Tests use it instead of `defer { Task { await cleanup() } }`,
/// which left a task behind that closed sockets after the test had ended, racing the next test.
public func afterwards<Result>(
    _ cleanup: () async -> Void, _ body: () async throws -> Result
) async throws -> Result {
    let result: Result
    do { result = try await body() } catch {
        await cleanup()
        throw error
    }
    await cleanup()
    return result
}

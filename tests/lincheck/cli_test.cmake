# Runs the lincheck CLI on the fixture histories in testdata/ and checks its
# exit status (0 linearizable, 1 not, 2 bad input or usage, 3 unknown) and
# the essentials of what it prints.
# Invoked by ctest as: cmake -DLINCHECK=... -DTESTDATA=... -P cli_test.cmake

function(expect_run expected_code expected_output)
  execute_process(COMMAND ${LINCHECK} ${ARGN}
    RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT code STREQUAL "${expected_code}")
    message(FATAL_ERROR "lincheck ${ARGN}: exit ${code}, expected ${expected_code}\n"
                        "stdout:\n${out}\nstderr:\n${err}")
  endif()
  string(FIND "${out}${err}" "${expected_output}" found)
  if(found EQUAL -1)
    message(FATAL_ERROR "lincheck ${ARGN}: output lacks \"${expected_output}\"\n"
                        "stdout:\n${out}\nstderr:\n${err}")
  endif()
endfunction()

expect_run(0 "outcome: linearizable" ${TESTDATA}/linearizable.jsonl)
expect_run(0 "keys: 1" ${TESTDATA}/linearizable.jsonl)
expect_run(1 "outcome: not linearizable" ${TESTDATA}/stale_read.jsonl)
expect_run(1 "process 2 get -> \"a\" (invoked at 40 ns, ok at 50 ns)" ${TESTDATA}/stale_read.jsonl)
expect_run(1 "key: \"k1\"" ${TESTDATA}/stale_read.jsonl)
expect_run(1 "outcome: not linearizable" ${TESTDATA}/wide_violation.jsonl)
expect_run(3 "outcome: unknown" ${TESTDATA}/wide_violation.jsonl --max-states 3)
expect_run(3 "budget exhausted" --max-states=3 ${TESTDATA}/wide_violation.jsonl)
expect_run(2 "line 2: not valid JSON" ${TESTDATA}/bad_json.jsonl)
expect_run(2 "outcome: invalid history" ${TESTDATA}/two_outstanding.jsonl)
expect_run(2 "already has an operation outstanding" ${TESTDATA}/two_outstanding.jsonl)
expect_run(2 "cannot open history" ${TESTDATA}/does_not_exist.jsonl)
expect_run(2 "no history file given")
expect_run(2 "unknown option" --frobnicate ${TESTDATA}/linearizable.jsonl)
expect_run(2 "--max-states must be a positive integer" ${TESTDATA}/linearizable.jsonl --max-states x)
expect_run(2 "--max-states needs a number" ${TESTDATA}/linearizable.jsonl --max-states)
expect_run(2 "only one history file" ${TESTDATA}/linearizable.jsonl ${TESTDATA}/stale_read.jsonl)
expect_run(0 "usage: lincheck" --help)

"""nbgrader settings of the NovaPick course (loaded by ``python -m autograder``).

The CLI sets the course root, the gradebook and the kernel manager (sandboxed or
not) per run; everything fixed lives here."""
c = get_config()  # noqa: F821 - provided by traitlets when this file is loaded

c.CourseDirectory.course_id = "novapick"
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"

# Student notebooks: the stub every solution region becomes.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Autograding: a deleted graded cell comes back from the source; grade cells always run
# from the source's text (OverwriteCells), whatever the submission holds.
c.OverwriteCells.add_missing_cells = True
c.Execute.timeout = 120           # per cell (the data cell generates demonstrations); --cell-timeout
c.Execute.interrupt_on_timeout = True
c.Execute.startup_timeout = 120
c.Execute.raise_on_iopub_timeout = False
c.LimitOutput.max_lines = 300
c.LimitOutput.max_traceback = 60
c.Autograde.autograde_preprocessors = [
    "autograder.execute.LimitedExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]

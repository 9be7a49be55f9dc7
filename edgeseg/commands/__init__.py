"""One module per ``edgeseg`` subcommand: parse the options, call the library, print the result.

These modules import only click and the standard library at the top; anything heavy is imported
inside the command body.
"""

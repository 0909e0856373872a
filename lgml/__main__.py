from lgml.cli import app

app(prog_name="lgml")

from ogcflow.cli import app

app(prog_name="ogcflow")

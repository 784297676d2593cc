from vae.cli import main

main()

export { main, commands } from './main.js'
